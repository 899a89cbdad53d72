//! Fernet token columns judged natively, a whole `COPY ... TO STDOUT` text block at a time.
//!
//! The same straight path as `harness.formats.fernet.FernetRingVerifier.accept`, for
//! every token column of every line of a block: strict URL-safe base64 with canonical
//! padding, version 0x80, whole AES blocks, the timestamp against the clock (and the
//! time-to-live, if any), HMAC-SHA256 under each key of the ring in order (compared in
//! constant time), then the PKCS#7 padding of the last plaintext block under the
//! verifying key. A line is accepted only when every one of its token cells passes;
//! anything else (a backslash anywhere in the line: an escape or a NULL `\N`; the wrong
//! number of fields; any cell that fails or is merely unusual, such as non-canonical
//! base64) is handed back untouched, so that the Python path gives each cell its exact
//! reason. Accepting is the only judgement made here: a cell is never rejected on this
//! side. The GIL is released while a block is judged.

use aes::cipher::{generic_array::GenericArray, BlockDecrypt, KeyInit};
use aes::Aes128;
use base64::alphabet::URL_SAFE;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine;
use hmac::{Hmac, Mac};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use sha2::Sha256;

mod bcrypt_lines;

const VERSION: u8 = 0x80;
const HEADER: usize = 1 + 8 + 16;
const MAC: usize = 32;
const BLOCK: usize = 16;
const FINGERPRINT: usize = 16;

/// URL-safe alphabet, padding required and canonical, no stray bits after the last byte.
const STRICT: GeneralPurpose = GeneralPurpose::new(
    &URL_SAFE,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::RequireCanonical)
        .with_decode_allow_trailing_bits(false),
);

struct RingKey {
    /// HMAC-SHA256 with the signing key's inner and outer blocks already absorbed.
    mac: Hmac<Sha256>,
    cipher: Aes128,
}

/// What one block's accepted lines add up to.
struct Judged {
    part_rows: Vec<u64>,
    per_key: Vec<Vec<u64>>,
    fingerprints: Vec<Vec<u8>>,
    rest: Vec<u8>,
}

/// Judges blocks of COPY text lines `id[<TAB>part]<TAB>token...` under one key ring at one time.
#[pyclass(frozen, module = "votriz_fernet_native")]
struct BlockJudge {
    ring: Vec<RingKey>,
    now: f64,
    latest: f64,
    ttl: Option<f64>,
    /// The named parts' UTF-8 bytes; a line whose part is none of them counts in the last
    /// part (`other`). None: the lines have no part field.
    parts: Option<Vec<Vec<u8>>>,
    columns: usize,
}

/// `a <= b` exactly, as Python compares an int with a float.
fn u64_le_f64(a: u64, b: f64) -> bool {
    if b.is_nan() {
        return false;
    }
    if b >= 18_446_744_073_709_551_616.0 {
        return true;
    }
    if b < 0.0 {
        return false;
    }
    a <= b.floor() as u64
}

impl BlockJudge {
    /// The verifying key's index and the token's fingerprint, or None (handed back).
    fn accept(&self, cell: &[u8], raw: &mut Vec<u8>) -> Option<(usize, [u8; FINGERPRINT])> {
        if cell.is_empty() || !cell.len().is_multiple_of(4) {
            return None;
        }
        raw.clear();
        raw.resize(cell.len() / 4 * 3, 0);
        let size = STRICT.decode_slice(cell, raw).ok()?;
        let raw = &raw[..size];
        if size <= HEADER + MAC || raw[0] != VERSION || !(size - HEADER - MAC).is_multiple_of(BLOCK)
        {
            return None;
        }
        let stamp = u64::from_be_bytes(raw[1..9].try_into().ok()?);
        if !u64_le_f64(stamp, self.latest) {
            return None;
        }
        if let Some(ttl) = self.ttl {
            // As Python's `stamp + ttl >= now` (a float sum): a NaN is not accepted.
            #[allow(clippy::neg_cmp_op_on_partial_ord)]
            if !(stamp as f64 + ttl >= self.now) {
                return None;
            }
        }
        let (signed, tag) = raw.split_at(size - MAC);
        let index = self.ring.iter().position(|key| {
            let mut mac = key.mac.clone();
            mac.update(signed);
            mac.verify_slice(tag).is_ok()
        })?;
        // CBC: the last plaintext block is AES-decrypt(last block) XOR the block before it
        // (the IV for a one-block token); it holds all of PKCS#7's padding.
        let last = &signed[signed.len() - BLOCK..];
        let before = &signed[signed.len() - 2 * BLOCK..signed.len() - BLOCK];
        let mut plain = GenericArray::clone_from_slice(last);
        self.ring[index].cipher.decrypt_block(&mut plain);
        for (byte, chained) in plain.iter_mut().zip(before) {
            *byte ^= chained;
        }
        let length = plain[BLOCK - 1] as usize;
        if length == 0
            || length > BLOCK
            || plain[BLOCK - length..]
                .iter()
                .any(|&b| b as usize != length)
        {
            return None;
        }
        let mut fingerprint = [0u8; FINGERPRINT];
        fingerprint[..8].copy_from_slice(&raw[9..17]);
        fingerprint[8..].copy_from_slice(&signed[signed.len() - 8..]);
        Some((index, fingerprint))
    }

    fn judge_block(&self, block: &[u8]) -> Judged {
        let part_count = self.parts.as_ref().map_or(1, |named| named.len() + 1);
        let fields = 1 + usize::from(self.parts.is_some()) + self.columns;
        let mut judged = Judged {
            part_rows: vec![0; part_count],
            per_key: vec![vec![0; self.ring.len()]; self.columns],
            fingerprints: vec![Vec::with_capacity(block.len() / 12); self.columns],
            rest: Vec::new(),
        };
        let mut raw = Vec::with_capacity(256);
        let mut cells: Vec<&[u8]> = Vec::with_capacity(fields);
        let mut found: Vec<(usize, [u8; FINGERPRINT])> = Vec::with_capacity(self.columns);
        if block.is_empty() {
            return judged;
        }
        let body = block.strip_suffix(b"\n").unwrap_or(block);
        for line in body.split(|&b| b == b'\n') {
            cells.clear();
            found.clear();
            let plain_line = !line.contains(&b'\\');
            if plain_line {
                cells.extend(line.split(|&b| b == b'\t'));
            }
            let mut part = part_count - 1;
            let mut whole = plain_line && cells.len() == fields;
            if whole {
                if let Some(named) = &self.parts {
                    if std::str::from_utf8(cells[1]).is_err() {
                        whole = false;
                    } else if let Some(at) =
                        named.iter().position(|name| name.as_slice() == cells[1])
                    {
                        part = at;
                    }
                }
            }
            if whole {
                for cell in &cells[fields - self.columns..] {
                    match self.accept(cell, &mut raw) {
                        Some(verdict) => found.push(verdict),
                        None => {
                            whole = false;
                            break;
                        }
                    }
                }
            }
            if !whole {
                judged.rest.extend_from_slice(line);
                judged.rest.push(b'\n');
                continue;
            }
            judged.part_rows[part] += 1;
            for (column, (index, fingerprint)) in found.iter().enumerate() {
                judged.per_key[column][*index] += 1;
                judged.fingerprints[column].extend_from_slice(fingerprint);
            }
        }
        judged
    }
}

#[pymethods]
impl BlockJudge {
    /// `BlockJudge(keys, now, latest, ttl, parts, columns)`: `keys` the ring's 32-byte Fernet
    /// keys in order; tokens stamped after `latest` (now + the clock skew) or, with a `ttl`,
    /// before `now - ttl` are handed back; `parts` the named parts (None: no part field);
    /// `columns` the token columns after the id (and part) on each line.
    #[new]
    #[pyo3(signature = (keys, now, latest, ttl, parts, columns))]
    fn new(
        keys: Vec<Vec<u8>>,
        now: f64,
        latest: f64,
        ttl: Option<f64>,
        parts: Option<Vec<String>>,
        columns: usize,
    ) -> PyResult<Self> {
        if columns == 0 {
            return Err(PyValueError::new_err(
                "a block judge needs at least one token column",
            ));
        }
        let ring = keys
            .iter()
            .map(|key| {
                if key.len() != 32 {
                    return Err(PyValueError::new_err("a Fernet key is 32 bytes"));
                }
                let mac = <Hmac<Sha256> as Mac>::new_from_slice(&key[..16])
                    .map_err(|_| PyValueError::new_err("an HMAC key of 16 bytes was refused"))?;
                let cipher = Aes128::new_from_slice(&key[16..])
                    .map_err(|_| PyValueError::new_err("an AES key of 16 bytes was refused"))?;
                Ok(RingKey { mac, cipher })
            })
            .collect::<PyResult<Vec<_>>>()?;
        let parts = parts.map(|named| named.into_iter().map(String::into_bytes).collect());
        Ok(BlockJudge {
            ring,
            now,
            latest,
            ttl,
            parts,
            columns,
        })
    }

    /// Judge a block of whole COPY text lines. Returns `(part_rows, per_key, fingerprints,
    /// rest)`: accepted lines per part (named parts, then `other`; one count without parts),
    /// per token column the cells each key verified and their fingerprints end to end (the
    /// IV's first 8 bytes, the ciphertext's last 8), and the lines not accepted, in order,
    /// each ending in a newline.
    #[allow(clippy::type_complexity)]
    fn judge<'py>(
        &self,
        py: Python<'py>,
        block: &[u8],
    ) -> (
        Vec<u64>,
        Vec<Vec<u64>>,
        Vec<Bound<'py, PyBytes>>,
        Bound<'py, PyBytes>,
    ) {
        let judged = py.allow_threads(|| self.judge_block(block));
        let fingerprints = judged
            .fingerprints
            .iter()
            .map(|f| PyBytes::new(py, f))
            .collect();
        (
            judged.part_rows,
            judged.per_key,
            fingerprints,
            PyBytes::new(py, &judged.rest),
        )
    }
}

/// `split_halves(fingerprints, buckets)`: the 16-byte fingerprints' first and second 8-byte
/// halves, each read as a native-endian unsigned 64-bit value, split by value modulo
/// `buckets`, in order; per bucket the values end to end (as `array("Q").tobytes()` holds them).
#[pyfunction]
#[allow(clippy::type_complexity)]
fn split_halves<'py>(
    py: Python<'py>,
    fingerprints: &[u8],
    buckets: usize,
) -> PyResult<(Vec<Bound<'py, PyBytes>>, Vec<Bound<'py, PyBytes>>)> {
    if buckets == 0 || !fingerprints.len().is_multiple_of(FINGERPRINT) {
        return Err(PyValueError::new_err(
            "whole 16-byte fingerprints and at least one bucket",
        ));
    }
    let (firsts, seconds) = py.allow_threads(|| {
        let share = fingerprints.len() / FINGERPRINT / buckets * 8 + 64;
        let mut firsts = vec![Vec::with_capacity(share); buckets];
        let mut seconds = vec![Vec::with_capacity(share); buckets];
        for cell in fingerprints.chunks_exact(FINGERPRINT) {
            for (half, into) in [(&cell[..8], &mut firsts), (&cell[8..], &mut seconds)] {
                let value = u64::from_ne_bytes(half.try_into().expect("8 bytes"));
                into[(value % buckets as u64) as usize].extend_from_slice(half);
            }
        }
        (firsts, seconds)
    });
    let bytes = |all: Vec<Vec<u8>>| all.iter().map(|b| PyBytes::new(py, b)).collect();
    Ok((bytes(firsts), bytes(seconds)))
}

/// `count_shared(values)`: of native-endian unsigned 64-bit values end to end, `(values equal
/// to another value, distinct values that repeat)`.
#[pyfunction]
fn count_shared(py: Python<'_>, values: &[u8]) -> PyResult<(u64, u64)> {
    if !values.len().is_multiple_of(8) {
        return Err(PyValueError::new_err("whole 8-byte values"));
    }
    Ok(py.allow_threads(|| {
        let mut sorted: Vec<u64> = values
            .chunks_exact(8)
            .map(|v| u64::from_ne_bytes(v.try_into().expect("8 bytes")))
            .collect();
        sorted.sort_unstable();
        let (mut cells, mut groups) = (0u64, 0u64);
        for run in sorted.chunk_by(|a, b| a == b) {
            if run.len() > 1 {
                cells += run.len() as u64;
                groups += 1;
            }
        }
        (cells, groups)
    }))
}

/// The files this module is built from, relative to the crate, in the order `sha256sum`
/// lists them: every `src/*.rs` and the build's own files (a test holds this list to the
/// checkout's).
const SOURCES: [(&str, &[u8]); 5] = [
    ("Cargo.lock", include_bytes!("../Cargo.lock")),
    ("Cargo.toml", include_bytes!("../Cargo.toml")),
    ("pyproject.toml", include_bytes!("../pyproject.toml")),
    ("src/bcrypt_lines.rs", include_bytes!("bcrypt_lines.rs")),
    ("src/lib.rs", include_bytes!("lib.rs")),
];

/// The SHA-256 of the `sha256sum` listing of [`SOURCES`] as built (in the crate:
/// `sha256sum Cargo.lock Cargo.toml pyproject.toml src/*.rs | sha256sum`).
fn sources_digest() -> String {
    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|byte| format!("{byte:02x}")).collect()
    }
    let listing: String = SOURCES
        .iter()
        .map(|(name, data)| format!("{}  {name}\n", hex(&<Sha256 as sha2::Digest>::digest(data))))
        .collect();
    hex(&<Sha256 as sha2::Digest>::digest(listing.as_bytes()))
}

#[pymodule]
fn votriz_fernet_native(module: &Bound<'_, PyModule>) -> PyResult<()> {
    // What harness/formats/fernet_engine.py expects (a stale build is not used): the
    // interface, and the sources built from, compared with the checkout's.
    module.add("INTERFACE", 3)?;
    module.add("SOURCES_DIGEST", sources_digest())?;
    module.add_class::<BlockJudge>()?;
    module.add_function(wrap_pyfunction!(split_halves, module)?)?;
    module.add_function(wrap_pyfunction!(count_shared, module)?)?;
    module.add_function(wrap_pyfunction!(bcrypt_lines::bcrypt_lines_costs, module)?)?;
    Ok(())
}
