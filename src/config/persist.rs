//! Writing run-time camera changes (the API's adds, changes and removals) back
//! into the config file, so that a restart serves the same cameras. The file is
//! edited as text, one camera entry at a time: every other line (comments,
//! `${VAR}` references, the `server:` section, other cameras) stays as it was.
//! An entry is its key line and the indented lines under it, up to the next key
//! of the `cameras:` block; comment lines just above an entry stay with it.
//! The new file is written beside the old one, synced and renamed over it.

use std::io::Write;
use std::path::Path;

use serde_json::{Map, Value};

/// Where the `cameras:` block is and what it holds.
struct Block {
    /// Index of the `cameras:` line, if the file has one.
    header: Option<usize>,
    /// Whether the header line is `cameras: {}` (an empty flow map) or holds nothing.
    empty_header: bool,
    /// Each entry: (name, first line, one past its last line).
    entries: Vec<(String, usize, usize)>,
    /// One past the block's last line of content.
    end: usize,
    /// The entries' indentation.
    indent: usize,
}

fn indent_of(line: &str) -> usize {
    line.len() - line.trim_start_matches(' ').len()
}

fn is_content(line: &str) -> bool {
    let t = line.trim();
    !t.is_empty() && !t.starts_with('#')
}

/// The key of a `key:` line (plain or quoted), if it is one.
fn key_of(line: &str) -> Option<String> {
    let t = line.trim_start();
    let (key, rest) = if let Some(q @ ('"' | '\'')) = t.chars().next() {
        let end = t[1..].find(q)? + 1;
        (&t[1..end], &t[end + 1..])
    } else {
        let i = t.find(':')?;
        (&t[..i], &t[i..])
    };
    let rest = rest.strip_prefix(':')?;
    (rest.is_empty() || rest.starts_with([' ', '\t'])).then(|| key.trim().to_owned())
}

fn block(lines: &[&str]) -> Result<Block, String> {
    let header = lines.iter().position(|l| indent_of(l) == 0 && key_of(l).as_deref() == Some("cameras"));
    let Some(h) = header else {
        return Ok(Block { header: None, empty_header: false, entries: Vec::new(), end: lines.len(), indent: 2 });
    };
    let value = lines[h].split_once(':').map_or("", |(_, v)| v);
    let value = value.split(" #").next().unwrap_or("").trim();
    let empty_header = match value {
        "" => false,
        "{}" | "~" | "null" => true,
        _ => {
            return Err(format!(
                "line {}: `cameras:` is written in flow style ({value}); camhub edits a block of \
                 indented entries (one `name:` per line)",
                h + 1
            ));
        }
    };
    let mut end = h + 1;
    let mut indent = None;
    let mut entries: Vec<(String, usize, usize)> = Vec::new();
    for (i, line) in lines.iter().enumerate().skip(h + 1) {
        if !is_content(line) {
            continue;
        }
        let ind = indent_of(line);
        if ind == 0 {
            break;
        }
        end = i + 1;
        let entry_indent = *indent.get_or_insert(ind);
        if ind < entry_indent {
            return Err(format!("line {}: indentation the cameras block does not use", i + 1));
        }
        if ind == entry_indent {
            let name = key_of(line).ok_or_else(|| format!("line {}: not a `name:` camera entry", i + 1))?;
            entries.push((name, i, i + 1));
        }
        if let Some(last) = entries.last_mut() {
            last.2 = i + 1;
        }
    }
    if empty_header && !entries.is_empty() {
        return Err(format!("line {}: `cameras:` has both a value and entries", h + 1));
    }
    Ok(Block { header, empty_header, entries, end, indent: indent.unwrap_or(2) })
}

/// A `$` in a value the config file interpolates is written `$$` (a literal
/// `$`): API values are taken literally.
fn escape_dollars(v: &mut Value) {
    if let Value::String(s) = v {
        *s = s.replace('$', "$$");
    }
}

/// The camera's entry in the file's block style: one line per option, each
/// value written as JSON (which YAML reads as it is).
fn render(name: &str, options: &Map<String, Value>, indent: usize) -> Vec<String> {
    let mut options = options.clone();
    for k in ["url", "username", "password"] {
        options.get_mut(k).map(escape_dollars);
    }
    if let Some(Value::Object(st)) = options.get_mut("streams") {
        st.values_mut().for_each(escape_dollars);
    }
    if let Some(Value::Object(outs)) = options.get_mut("outputs") {
        for out in outs.values_mut() {
            if let Some(Value::Object(r)) = out.get_mut("redis") {
                r.get_mut("url").map(escape_dollars);
            }
        }
    }
    let pad = " ".repeat(indent);
    let mut out = vec![format!("{pad}{name}:")];
    if options.is_empty() {
        out[0].push_str(" {}");
    }
    for (k, v) in &options {
        out.push(format!("{pad}  {k}: {v}"));
    }
    out
}

fn join(lines: Vec<String>) -> String {
    let mut s = lines.join("\n");
    s.push('\n');
    s
}

/// The file's text with camera `name` set to `options` (the API's JSON keys):
/// its entry replaced in place, or a new entry after the last one.
pub fn set_camera(text: &str, name: &str, options: &Map<String, Value>) -> Result<String, String> {
    let lines: Vec<&str> = text.lines().collect();
    let b = block(&lines)?;
    let mut out: Vec<String> = lines.iter().map(|l| (*l).to_owned()).collect();
    let entry = render(name, options, b.indent);
    match (b.header, b.entries.iter().find(|(n, ..)| n == name)) {
        (_, Some((_, start, end))) => {
            out.splice(*start..*end, entry);
        }
        (Some(h), None) => {
            if b.empty_header {
                out[h] = "cameras:".to_owned();
            }
            let at = b.entries.last().map_or(if b.empty_header { h + 1 } else { b.end }, |e| e.2);
            out.splice(at..at, entry);
        }
        (None, None) => {
            out.push("cameras:".to_owned());
            out.extend(entry);
        }
    }
    Ok(join(out))
}

/// The file's text without camera `name` (`Ok(None)`: it is not in the file).
pub fn remove_camera(text: &str, name: &str) -> Result<Option<String>, String> {
    let lines: Vec<&str> = text.lines().collect();
    let b = block(&lines)?;
    let Some((_, start, end)) = b.entries.iter().find(|(n, ..)| n == name) else { return Ok(None) };
    let mut out: Vec<String> = lines.iter().map(|l| (*l).to_owned()).collect();
    out.drain(*start..*end);
    if b.entries.len() == 1
        && let Some(h) = b.header
    {
        // No camera left: an empty map, not a null.
        out[h] = "cameras: {}".to_owned();
    }
    Ok(Some(join(out)))
}

/// Replaces the file at `path` with `text`: a temporary file beside it (same
/// permissions), synced, renamed over it, and the directory synced. A symlink
/// is followed: its target is replaced.
pub fn write_atomic(path: &Path, text: &str) -> std::io::Result<()> {
    let real = std::fs::canonicalize(path)?;
    let dir = real.parent().unwrap_or(Path::new("/"));
    let file_name = real.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{file_name}.camhub-{}.tmp", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.set_permissions(std::fs::metadata(&real)?.permissions())?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, &real)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    const FILE: &str = "# my cameras\nserver:\n  listen: 127.0.0.1:8080\n\ncameras:\n  # the front door\n  door: rtsp://${DOOR}/s  # inline\n  yard:\n    url: rtsp://yard/s\n    # a note\n    keep: connected\n\n# the end\n";

    #[test]
    fn a_changed_entry_is_replaced_in_place_and_the_rest_kept() {
        let out = set_camera(FILE, "yard", &opts(serde_json::json!({"url": "rtsp://new/s"}))).unwrap();
        assert_eq!(
            out,
            "# my cameras\nserver:\n  listen: 127.0.0.1:8080\n\ncameras:\n  # the front door\n  door: rtsp://${DOOR}/s  # inline\n  yard:\n    url: \"rtsp://new/s\"\n\n# the end\n"
        );
    }

    #[test]
    fn a_new_entry_goes_after_the_last_and_comments_stay_put() {
        let out =
            set_camera(FILE, "gate", &opts(serde_json::json!({"url": "rtsp://g/s", "keep": "on_demand"}))).unwrap();
        assert!(
            out.contains(
                "    keep: connected\n  gate:\n    keep: \"on_demand\"\n    url: \"rtsp://g/s\"\n\n# the end\n"
            ),
            "{out}"
        );
        assert!(out.starts_with(FILE.split("  yard:").next().unwrap()), "{out}");
    }

    #[test]
    fn removing_takes_the_entry_only_and_the_last_leaves_an_empty_map() {
        let out = remove_camera(FILE, "door").unwrap().unwrap();
        assert!(out.contains("cameras:\n  # the front door\n  yard:\n"), "{out}");
        let out = remove_camera(&out, "yard").unwrap().unwrap();
        assert!(out.contains("cameras: {}\n  # the front door\n\n# the end\n"), "{out}");
        assert_eq!(remove_camera(&out, "yard").unwrap(), None);
        let again = set_camera(&out, "door", &opts(serde_json::json!({"url": "a.mp4"}))).unwrap();
        assert!(again.contains("cameras:\n  door:\n    url: \"a.mp4\"\n  # the front door\n"), "{again}");
    }

    #[test]
    fn files_without_a_cameras_block_get_one_and_dollars_stay_literal() {
        let out = set_camera("server: {}\n", "a", &opts(serde_json::json!({"url": "rtsp://h/$x", "password": "p$1"})))
            .unwrap();
        assert_eq!(out, "server: {}\ncameras:\n  a:\n    password: \"p$$1\"\n    url: \"rtsp://h/$$x\"\n");
        let out = set_camera("", "a", &opts(serde_json::json!({"url": "x.mp4"}))).unwrap();
        assert_eq!(out, "cameras:\n  a:\n    url: \"x.mp4\"\n");
    }

    #[test]
    fn quoted_keys_and_other_indents_are_entries_too() {
        let text = "cameras:\n    \"door\":\n        url: a.mp4\n    'yard': b.mp4\n";
        let out = set_camera(text, "yard", &opts(serde_json::json!({"url": "c.mp4"}))).unwrap();
        assert_eq!(out, "cameras:\n    \"door\":\n        url: a.mp4\n    yard:\n      url: \"c.mp4\"\n");
    }

    #[test]
    fn flow_style_cameras_are_refused_with_the_line() {
        let e = set_camera("server: {}\ncameras: {a: x.mp4}\n", "b", &Map::new()).unwrap_err();
        assert!(e.starts_with("line 2:") && e.contains("flow style"), "{e}");
    }
}
