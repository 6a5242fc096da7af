//! MP4/MKV store H.264/H.265 as length-prefixed NAL units with the parameter
//! sets in the container's `avcC`/`hvcC` box; camhub's units are Annex B with
//! parameter sets on every keyframe. This converts the one into the other.

use crate::media::Codec;

const START: [u8; 4] = [0, 0, 0, 1];

/// Why a container's packets cannot become Annex B.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FramingError {
    #[error("codec extradata is truncated")]
    TruncatedExtradata,
    #[error("truncated NAL length")]
    TruncatedLength,
    #[error("NAL of {nal} bytes overruns a {packet}-byte packet")]
    Overrun { nal: usize, packet: usize },
}

/// How a container's packets are framed, from its codec extradata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Framing {
    /// Packets are already Annex B (raw .h264/.h265 files, some MKVs).
    AnnexB,
    /// Length-prefixed NALs; parameter sets given in Annex B form for keyframes.
    LengthPrefixed { len_size: usize, parameter_sets: Vec<u8> },
}

/// Reads the framing from `extradata` (`avcC` or `hvcC`, or Annex B / empty).
pub fn framing(codec: Codec, extra: &[u8]) -> Result<Framing, FramingError> {
    if extra.first() != Some(&1) || codec == Codec::Mjpeg {
        return Ok(Framing::AnnexB);
    }
    let mut ps = Vec::new();
    let mut r = Reader(extra);
    let len_size = match codec {
        Codec::H264 => {
            r.skip(4)?;
            let len_size = (r.u8()? & 3) as usize + 1;
            let sps = r.u8()? & 0x1f;
            for _ in 0..sps {
                push_nal(&mut ps, r.nal()?);
            }
            let pps = r.u8()?;
            for _ in 0..pps {
                push_nal(&mut ps, r.nal()?);
            }
            len_size
        }
        Codec::H265 => {
            r.skip(21)?;
            let len_size = (r.u8()? & 3) as usize + 1;
            let arrays = r.u8()?;
            for _ in 0..arrays {
                r.skip(1)?;
                let n = r.u16()?;
                for _ in 0..n {
                    push_nal(&mut ps, r.nal()?);
                }
            }
            len_size
        }
        Codec::Mjpeg => unreachable!("JPEG frames have no length-prefixed framing"),
    };
    Ok(Framing::LengthPrefixed { len_size, parameter_sets: ps })
}

/// Converts one packet to an Annex B access unit, with parameter sets first on keyframes.
pub fn to_annexb(framing: &Framing, packet: &[u8], keyframe: bool) -> Result<Vec<u8>, FramingError> {
    match framing {
        Framing::AnnexB => Ok(packet.to_vec()),
        Framing::LengthPrefixed { len_size, parameter_sets } => {
            let mut out = Vec::with_capacity(packet.len() + parameter_sets.len() + 16);
            if keyframe {
                out.extend_from_slice(parameter_sets);
            }
            let mut rest = packet;
            while !rest.is_empty() {
                if rest.len() < *len_size {
                    return Err(FramingError::TruncatedLength);
                }
                let len = rest[..*len_size].iter().fold(0usize, |a, b| (a << 8) | *b as usize);
                rest = &rest[*len_size..];
                if len > rest.len() {
                    return Err(FramingError::Overrun { nal: len, packet: packet.len() });
                }
                push_nal(&mut out, &rest[..len]);
                rest = &rest[len..];
            }
            Ok(out)
        }
    }
}

fn push_nal(out: &mut Vec<u8>, nal: &[u8]) {
    out.extend_from_slice(&START);
    out.extend_from_slice(nal);
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], FramingError> {
        if self.0.len() < n {
            return Err(FramingError::TruncatedExtradata);
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    fn skip(&mut self, n: usize) -> Result<(), FramingError> {
        self.take(n).map(drop)
    }
    fn u8(&mut self) -> Result<u8, FramingError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<usize, FramingError> {
        let b = self.take(2)?;
        Ok(((b[0] as usize) << 8) | b[1] as usize)
    }
    fn nal(&mut self) -> Result<&'a [u8], FramingError> {
        let n = self.u16()?;
        self.take(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn avcc_packets_become_annexb_with_parameter_sets_on_keyframes() {
        // avcC: version 1, profile/compat/level, 4-byte lengths, 1 SPS, 1 PPS.
        let extra = [1, 0x64, 0, 0x1f, 0xff, 0xe1, 0, 2, 0x67, 0xAA, 1, 0, 1, 0x68];
        let f = framing(Codec::H264, &extra).unwrap();
        let pkt = [0, 0, 0, 2, 0x65, 0x11, 0, 0, 0, 1, 0x06];
        let key = to_annexb(&f, &pkt, true).unwrap();
        assert_eq!(key, [0, 0, 0, 1, 0x67, 0xAA, 0, 0, 0, 1, 0x68, 0, 0, 0, 1, 0x65, 0x11, 0, 0, 0, 1, 0x06]);
        let p = to_annexb(&f, &pkt, false).unwrap();
        assert_eq!(p, [0, 0, 0, 1, 0x65, 0x11, 0, 0, 0, 1, 0x06]);
        assert!(to_annexb(&f, &[0, 0, 0, 9, 1], false).is_err());
        assert!(framing(Codec::H264, &extra[..7]).is_err());
        assert_eq!(framing(Codec::H264, &[0, 0, 0, 1, 0x67]).unwrap(), Framing::AnnexB);
    }
}
