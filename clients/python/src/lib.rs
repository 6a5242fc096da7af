//! `camhub._native`: the ring reader's low level for the Python client, built
//! from the hub's own ring crate (`crates/ring`): the layout tables, a mapping
//! whose pixels numpy views without a copy (`__array_interface__`; the mapping
//! lives as long as any view of it), acquire loads and release stores with real
//! memory ordering on x86 and ARM, and futex waits that release the GIL.

use std::os::fd::BorrowedFd;
use std::sync::atomic::Ordering;
use std::time::Duration;

use camhub_ring::layout;
use pyo3::exceptions::{PyIndexError, PyOSError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};

/// A ring file mapped shared, read-write. `np.asarray(mapping)` is a uint8 view
/// of the whole file (no copy) that keeps the mapping alive.
#[pyclass(frozen, module = "camhub._native")]
struct Mapping {
    map: camhub_ring::Mapping,
}

fn checked(m: &camhub_ring::Mapping, offset: usize, size: usize) -> PyResult<()> {
    if m.fits(offset, size) {
        Ok(())
    } else {
        Err(PyIndexError::new_err(format!("offset {offset} is not a {size}-byte word inside the {}-byte map", m.len())))
    }
}

fn timeout(t: Option<f64>) -> PyResult<Option<Duration>> {
    match t {
        None => Ok(None),
        Some(s) if s.is_finite() && s >= 0.0 => Ok(Some(Duration::from_secs_f64(s.min(1e9)))),
        Some(s) => Err(PyValueError::new_err(format!("timeout {s}: not a number of seconds >= 0"))),
    }
}

#[pymethods]
impl Mapping {
    /// Maps the first `size` bytes of the open file `fd` (None: all of it).
    #[new]
    #[pyo3(signature = (fd, size=None))]
    fn new(fd: i32, size: Option<usize>) -> PyResult<Self> {
        if fd < 0 {
            return Err(PyValueError::new_err(format!("fd {fd}")));
        }
        // SAFETY: the fd is only borrowed for the mmap call; the caller owns it.
        let fd = unsafe { BorrowedFd::borrow_raw(fd) };
        let map = match size {
            Some(n) => camhub_ring::Mapping::with_len(fd, n),
            None => camhub_ring::Mapping::new(fd),
        };
        map.map(|map| Mapping { map }).map_err(|e| PyOSError::new_err(e.to_string()))
    }

    #[getter]
    fn size(&self) -> usize {
        self.map.len()
    }

    fn __len__(&self) -> usize {
        self.map.len()
    }

    /// numpy's array interface: a writable uint8 view of the whole map.
    #[getter]
    fn __array_interface__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        d.set_item("version", 3)?;
        d.set_item("shape", (self.map.len(),))?;
        d.set_item("typestr", "|u1")?;
        d.set_item("data", (self.map.address(), false))?;
        Ok(d)
    }

    /// The u32 at `offset`, an acquire load.
    fn load_u32(&self, offset: usize) -> PyResult<u32> {
        checked(&self.map, offset, 4)?;
        Ok(self.map.u32_at(offset).load(Ordering::Acquire))
    }

    /// The u64 at `offset`, an acquire load.
    fn load_u64(&self, offset: usize) -> PyResult<u64> {
        checked(&self.map, offset, 8)?;
        Ok(self.map.u64_at(offset).load(Ordering::Acquire))
    }

    /// Stores `value` at `offset` as a u32, a release store.
    fn store_u32(&self, offset: usize, value: u32) -> PyResult<()> {
        checked(&self.map, offset, 4)?;
        self.map.u32_at(offset).store(value, Ordering::Release);
        Ok(())
    }

    /// Stores `value` at `offset` as a u64, a release store.
    fn store_u64(&self, offset: usize, value: u64) -> PyResult<()> {
        checked(&self.map, offset, 8)?;
        self.map.u64_at(offset).store(value, Ordering::Release);
        Ok(())
    }

    /// Sleeps while the u32 at `offset` equals `expected`, at most `timeout` s
    /// (None: until woken), without the GIL. True if woken (or the word had
    /// changed), False on timeout; a spurious wake-up counts as woken.
    #[pyo3(signature = (offset, expected, timeout=None))]
    fn wait(&self, py: Python<'_>, offset: usize, expected: u32, timeout: Option<f64>) -> PyResult<bool> {
        checked(&self.map, offset, 4)?;
        let t = self::timeout(timeout)?;
        Ok(py.detach(|| self.map.wait(offset, expected, t)) == camhub_ring::Waited::Woken)
    }

    /// Wakes every waiter on the u32 at `offset` (what the hub does after a publish).
    fn wake(&self, offset: usize) -> PyResult<()> {
        checked(&self.map, offset, 4)?;
        self.map.wake(offset);
        Ok(())
    }
}

/// A full memory barrier: loads and stores before it are done before any after it.
#[pyfunction]
fn fence() {
    std::sync::atomic::fence(Ordering::SeqCst);
}

/// Sleeps, without the GIL, until one of `words` (`(mapping, offset, expected)`
/// each, at most 128) no longer holds its expected u32, at most `timeout` s
/// (None: no limit). Returns that word's index, or None when the time ran out.
/// One system call for all of them (futex_waitv, Linux 5.16+).
#[pyfunction]
#[pyo3(signature = (words, timeout=None))]
fn wait_any(py: Python<'_>, words: Vec<(Py<Mapping>, usize, u32)>, timeout: Option<f64>) -> PyResult<Option<usize>> {
    let t = self::timeout(timeout)?;
    for (m, offset, _) in &words {
        checked(&m.get().map, *offset, 4)?;
    }
    let refs: Vec<_> = words.iter().map(|(m, o, v)| (m.get().map.u32_at(*o), *v)).collect();
    py.detach(|| camhub_ring::wait_any(&refs, t)).map_err(|e| PyOSError::new_err(e.to_string()))
}

fn table<'py>(py: Python<'py>, fields: &[(&str, usize)]) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    for (name, at) in fields {
        d.set_item(name.to_ascii_lowercase(), at)?;
    }
    Ok(d)
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add_class::<Mapping>()?;
    m.add_function(wrap_pyfunction!(fence, m)?)?;
    m.add_function(wrap_pyfunction!(wait_any, m)?)?;
    m.add("HEADER", table(py, layout::header::FIELDS)?)?;
    m.add("SLOT", table(py, layout::slot::FIELDS)?)?;
    m.add("READER", table(py, layout::reader::FIELDS)?)?;
    m.add("MAGIC", pyo3::types::PyBytes::new(py, layout::MAGIC))?;
    for (name, v) in [
        ("VERSION", layout::VERSION as usize),
        ("HEADER_SIZE", layout::HEADER_SIZE),
        ("MAX_READERS", layout::MAX_READERS),
        ("PLANE_SIZE", layout::PLANE_SIZE),
        ("READER_SIZE", layout::READER_SIZE),
        ("TABLE_LOCK_BYTE", layout::TABLE_LOCK_BYTE),
        ("READY", layout::READY as usize),
        ("CLOSED", layout::CLOSED as usize),
        ("ENDED", layout::ENDED as usize),
        ("LIVE", layout::LIVE as usize),
        ("REPLAY", layout::REPLAY as usize),
    ] {
        m.add(name, v)?;
    }
    let formats = PyDict::new(py);
    for (code, name, planes) in layout::FORMATS {
        formats.set_item(
            code,
            PyTuple::new(py, [name.into_pyobject(py)?.into_any(), planes.into_pyobject(py)?.into_any()])?,
        )?;
    }
    m.add("FORMATS", formats)?;
    Ok(())
}
