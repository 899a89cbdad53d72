//! Password hashes joined into lines, judged a whole chunk at a time: is a chunk nothing but
//! well-formed bcrypt hashes, and with which costs?
//!
//! The same answer as `harness.formats.bcrypt_hash.bcrypt_lines_costs` (the Python path, which
//! a differential test holds this to on arbitrary bytes): `count` lines of exactly 61 bytes,
//! each `$2a$`, `$2b$` or `$2y$`, two ASCII digits of a cost from 4 to 31, `$`, 53 characters
//! of bcrypt's alphabet (`./A-Za-z0-9`) and a newline. Anything else is None: nothing is said of
//! any line, and the caller classifies the rows one by one. The GIL is released meanwhile.

use pyo3::prelude::*;
use pyo3::types::PyDict;

/// A hash and its newline.
const LINE: usize = 61;

/// Which bytes are in bcrypt's alphabet.
const ALPHABET: [bool; 256] = {
    let mut table = [false; 256];
    let mut byte = 0;
    while byte < 256 {
        let b = byte as u8;
        table[byte] = b == b'.' || b == b'/' || b.is_ascii_alphanumeric();
        byte += 1;
    }
    table
};

/// Cost → lines, if `lines` is `count` well-formed bcrypt hashes, each followed by a newline.
pub fn lines_costs(lines: &[u8], count: usize) -> Option<[u64; 32]> {
    let mut costs = [0u64; 32];
    if lines.len() != LINE.checked_mul(count)? || (count == 0 && !lines.is_empty()) {
        return None;
    }
    for line in lines.chunks_exact(LINE) {
        let (tens, ones) = (line[4], line[5]);
        if line[0] != b'$'
            || line[1] != b'2'
            || !matches!(line[2], b'a' | b'b' | b'y')
            || line[3] != b'$'
            || line[6] != b'$'
            || line[60] != b'\n'
            || !tens.is_ascii_digit()
            || !ones.is_ascii_digit()
        {
            return None;
        }
        // No early exit: the loop over the 53 characters stays branch-free.
        if !line[7..60]
            .iter()
            .fold(true, |ok, &b| ok & ALPHABET[b as usize])
        {
            return None;
        }
        let cost = usize::from((tens - b'0') * 10 + (ones - b'0'));
        if !(4..=31).contains(&cost) {
            return None;
        }
        costs[cost] += 1;
    }
    Some(costs)
}

/// `bcrypt_lines_costs(lines, count)`: `{cost: lines}` if `lines` is `count` well-formed bcrypt
/// hashes each followed by a newline, else None (see [`lines_costs`]).
#[pyfunction]
pub fn bcrypt_lines_costs<'py>(
    py: Python<'py>,
    lines: &[u8],
    count: usize,
) -> PyResult<Option<Bound<'py, PyDict>>> {
    let Some(costs) = py.allow_threads(|| lines_costs(lines, count)) else {
        return Ok(None);
    };
    let found = PyDict::new(py);
    for (cost, &n) in costs.iter().enumerate().filter(|(_, &n)| n > 0) {
        found.set_item(cost, n)?;
    }
    Ok(Some(found))
}
