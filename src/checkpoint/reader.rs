//! Reading checkpoints: one `.safetensors` file or a sharded
//! `*.index.json`. Only headers are read when a checkpoint is opened; a
//! tensor's bytes are read when it is processed (peak memory stays near the
//! largest tensor), with positional reads that turn a file truncated under
//! the run into an error (see the private `files` module).
//!
//! The header is checked here before the `safetensors` crate validates the
//! layout, because the crate reports most problems as one opaque
//! "invalid header" and we owe the user a message that says what is wrong.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};

use safetensors::tensor::{Metadata, SafeTensorError};
use safetensors::{Dtype, SafeTensors};
use serde_json::Value;

use tch::{Device, Tensor};

use super::dtype::{dtype_name, kind_of};
use super::files::{copy_range, input_read_error, open_input, read_exact_at, CopyError};
use super::format::{self, FileInfo, Record};
use super::{bail, error, Context as _};
use crate::error::{CheckpointErrorKind, Result};
use crate::model::{Decision, Selection};
use crate::quantized::AffineQuantizedTensor;
use crate::recipe::Recipe;

/// safetensors' own limit; larger length fields mean "not safetensors".
const MAX_HEADER_BYTES: u64 = 100_000_000;

/// The most dims libtorch's operators handle ("only tensors with up to 64
/// dims are supported"): quantized records of higher rank are corrupt (the
/// recipes find such weights unfit, `Unfit::TooManyDims`).
pub const MAX_DIMS: usize = 64;

/// One tensor of an input checkpoint.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The tensor's name.
    pub name: String,
    /// Its safetensors dtype.
    pub dtype: Dtype,
    /// Its shape, as stored.
    pub shape: Vec<usize>,
    /// Which shard holds it (0 for a single file).
    pub shard: usize,
    /// Byte range in the shard's file.
    start: usize,
    end: usize,
}

impl Entry {
    /// Bytes of its data.
    pub fn num_bytes(&self) -> usize {
        self.end - self.start
    }
}

/// One open `.safetensors` file.
pub struct Shard {
    /// The file.
    pub path: PathBuf,
    /// The tensors in file order (by offset), for sequential reads.
    entries: Vec<Entry>,
    /// The `__metadata__` strings.
    pub metadata: BTreeMap<String, String>,
    file: File,
}

impl Shard {
    /// The shard's tensors in file order.
    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.entries.iter()
    }
}

/// A whole checkpoint, single-file or sharded.
pub struct Checkpoint {
    /// The path given: a `.safetensors` file or an index.
    pub path: PathBuf,
    /// For a sharded checkpoint, the index's `metadata` object.
    pub index_metadata: Option<serde_json::Map<String, Value>>,
    /// The files, in the index's order (one for a single file).
    pub shards: Vec<Shard>,
    /// Tensor name -> (shard, position in the shard's entries).
    index: HashMap<String, (usize, usize)>,
}

impl Checkpoint {
    /// Opens `path`: a `.safetensors` file or a sharded `*.index.json`,
    /// whose header(s) and index are checked here. Each shard stays open
    /// for reading its tensors.
    ///
    /// # Errors
    /// A missing file or directory, a FIFO, device or other file that is
    /// not a regular file, a file that is not safetensors or is truncated
    /// or corrupt, an index that names files outside its directory or
    /// tensors its shards do not hold.
    pub fn open(path: &Path) -> Result<Checkpoint> {
        if is_index_path(path) {
            Self::open_index(path)
        } else {
            let shard = open_shard(path, 0)?;
            Ok(Checkpoint {
                path: path.to_path_buf(),
                index_metadata: None,
                index: index_of(std::slice::from_ref(&shard)),
                shards: vec![shard],
            })
        }
    }

    /// Whether it was opened from an index.
    pub fn is_sharded(&self) -> bool {
        self.index_metadata.is_some()
    }

    /// The tensor named `name`.
    pub fn entry(&self, name: &str) -> Option<&Entry> {
        let &(shard, i) = self.index.get(name)?;
        self.shards[shard].entries.get(i)
    }

    /// The raw little-endian bytes of a tensor, read from its file.
    ///
    /// # Errors
    /// A failed read, or a file that no longer holds the bytes its header
    /// promised (truncated while the checkpoint was open).
    pub fn read(&self, entry: &Entry) -> Result<Vec<u8>> {
        let mut buf = vec![0u8; entry.num_bytes()];
        self.read_into(entry, &mut buf)?;
        Ok(buf)
    }

    fn read_into(&self, entry: &Entry, buf: &mut [u8]) -> Result<()> {
        self.read_into_at(entry, buf, 0)
    }

    /// Reads `buf.len()` bytes of a tensor's data from byte `offset` of it.
    fn read_into_at(&self, entry: &Entry, buf: &mut [u8], offset: usize) -> Result<()> {
        let shard = self.shard_of(entry)?;
        if offset + buf.len() > entry.num_bytes() {
            bail!(
                InvalidRequest,
                "bytes {offset}..{} of tensor {}, which has {}",
                offset + buf.len(),
                entry.name,
                entry.num_bytes()
            );
        }
        read_exact_at(&shard.file, buf, (entry.start + offset) as u64)
            .map_err(|e| input_read_error(&shard.path, &format!("tensor {}", entry.name), &e))
    }

    /// Writes a tensor's raw bytes to `out` through a bounded buffer; a
    /// failed read is the input's error, a failed write `Io`.
    pub(crate) fn copy_to(&self, entry: &Entry, out: &mut dyn std::io::Write) -> Result<()> {
        let shard = self.shard_of(entry)?;
        copy_range(&shard.file, entry.start as u64, entry.num_bytes(), out).map_err(|e| match e {
            CopyError::Read(e) => {
                input_read_error(&shard.path, &format!("tensor {}", entry.name), &e)
            }
            CopyError::Write(e) => error(
                CheckpointErrorKind::Io,
                format!("copying tensor {}: {e}", entry.name),
            ),
        })
    }

    /// The shard an entry of this checkpoint lives in (an entry of another
    /// checkpoint may name one it lacks).
    fn shard_of(&self, entry: &Entry) -> Result<&Shard> {
        match self.shards.get(entry.shard) {
            Some(shard) => Ok(shard),
            None => bail!(
                InvalidRequest,
                "tensor {} is not an entry of {}",
                entry.name,
                self.path.display()
            ),
        }
    }

    /// Bytes of tensor data in all shards.
    pub fn total_bytes(&self) -> usize {
        self.shards
            .iter()
            .flat_map(Shard::entries)
            .map(Entry::num_bytes)
            .sum()
    }

    /// Copies a tensor out of the checkpoint onto `device`.
    ///
    /// # Errors
    /// A dtype libtorch cannot hold (unsigned 16 to 64-bit integers), a
    /// shape libtorch cannot address, a failed copy.
    pub fn load(&self, entry: &Entry, device: Device) -> Result<Tensor> {
        let rows = entry.shape.first().copied().unwrap_or(1);
        self.load_rows(entry, 0..rows, device)
    }

    /// Copies rows `rows` (a range of the first dim) of a tensor of rank 1
    /// or more out of the checkpoint onto `device`, reading only their
    /// bytes; the whole of a 0-d tensor for `0..1`.
    ///
    /// # Errors
    /// Those of [`load`](Self::load); a range beyond the first dim.
    pub fn load_rows(
        &self,
        entry: &Entry,
        rows: std::ops::Range<usize>,
        device: Device,
    ) -> Result<Tensor> {
        let Some(kind) = kind_of(entry.dtype) else {
            bail!(
                Unquantizable,
                "tensor {} has dtype {}, which libtorch cannot hold",
                entry.name,
                dtype_name(entry.dtype)
            );
        };
        let mut shape = shape_i64(&entry.name, &entry.shape)?;
        let total_rows = entry.shape.first().copied().unwrap_or(1);
        if rows.start > rows.end || rows.end > total_rows {
            bail!(
                InvalidRequest,
                "rows {rows:?} of tensor {}, which has {total_rows}",
                entry.name
            );
        }
        if let Some(first) = shape.first_mut() {
            // Fits: at most the first dim, which shape_i64 checked.
            *first = rows.len() as i64;
        }
        let what = || format!("loading tensor {}", entry.name);
        // Read straight into the tensor's storage: one copy of the data in
        // memory, not two.
        let t =
            Tensor::f_empty(&shape, (kind, Device::Cpu)).context(CheckpointErrorKind::Io, what)?;
        // safetensors checked that shape, dtype and offsets agree, so whole
        // rows are whole multiples of the row size.
        let row_bytes = match total_rows {
            0 => 0,
            n => entry.num_bytes() / n,
        };
        let len = rows.len() * row_bytes;
        if t.numel() * kind.elt_size_in_bytes() != len {
            bail!(
                InvalidInput,
                "tensor {}: its shape and dtype do not match the size of its data",
                entry.name
            );
        }
        if len > 0 {
            // SAFETY: `t` is a fresh contiguous CPU tensor that owns exactly
            // `len` bytes (checked above), and nothing else refers to it.
            let storage = unsafe { std::slice::from_raw_parts_mut(t.data_ptr().cast::<u8>(), len) };
            self.read_into_at(entry, storage, rows.start * row_bytes)?;
        }
        t.f_to_device(device).context(CheckpointErrorKind::Io, what)
    }

    /// What happens to each tensor (by name) when `recipe` quantizes this
    /// checkpoint with `selection`, decided before any data is read.
    ///
    /// # Errors
    /// A chosen tensor whose shape libtorch cannot address; a tensor whose
    /// quantized outputs would take a name the checkpoint already uses.
    pub fn decide(
        &self,
        selection: &Selection,
        recipe: &Recipe,
    ) -> Result<BTreeMap<String, Decision>> {
        let mut decisions = BTreeMap::new();
        for entry in self.shards.iter().flat_map(Shard::entries) {
            let name = &entry.name;
            let decision = selection.decide_with(
                name,
                kind_of(entry.dtype),
                &dtype_name(entry.dtype),
                entry.shape.len(),
                || shape_i64(name, &entry.shape),
                recipe,
            )?;
            // A tensor of more than MAX_DIMS dims never gets here: the
            // recipe finds it unfit (`Unfit::TooManyDims`).
            if matches!(decision, Decision::Quantize { .. }) {
                // Outputs of two different quantized tensors never share a
                // name: each is its own tensor's name plus a fixed suffix.
                if let Some(taken) = format::output_names_for(name, recipe)
                    .into_iter()
                    .find(|n| self.entry(n).is_some())
                {
                    bail!(
                        Unquantizable,
                        "cannot quantize {name}: the checkpoint already has a tensor named \
                         {taken}, which the quantized output would need"
                    );
                }
            }
            decisions.insert(name.clone(), decision);
        }
        Ok(decisions)
    }

    /// Every file the checkpoint consists of (index included), to refuse
    /// writing over any of them.
    pub fn files(&self) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = self.shards.iter().map(|s| s.path.clone()).collect();
        if self.is_sharded() {
            files.push(self.path.clone());
        }
        files
    }

    fn open_index(path: &Path) -> Result<Checkpoint> {
        let text = read_input_file(path)?;
        let index: Value = serde_json::from_slice(&text)
            .context(CheckpointErrorKind::InvalidInput, || {
                format!("{}: not a valid safetensors index (JSON)", path.display())
            })?;
        let Some(weight_map) = index.get("weight_map").and_then(Value::as_object) else {
            bail!(
                InvalidInput,
                "{}: not a safetensors index: no \"weight_map\" object",
                path.display()
            );
        };
        let mut shard_files: Vec<&str> = Vec::new();
        for (name, file) in weight_map {
            let Some(file) = file.as_str() else {
                bail!(
                    InvalidInput,
                    "{}: weight_map entry {name:?} is not a file name",
                    path.display()
                );
            };
            if Path::new(file).components().count() != 1 || file == ".." {
                bail!(
                    InvalidInput,
                    "{}: weight_map entry {name:?} names {file:?}, which is not a file beside \
                     the index",
                    path.display()
                );
            }
            if !shard_files.contains(&file) {
                shard_files.push(file);
            }
        }
        if shard_files.is_empty() {
            bail!(
                InvalidInput,
                "{}: the index lists no tensors",
                path.display()
            );
        }
        shard_files.sort_unstable();
        let dir = path.parent().unwrap_or(Path::new("."));
        let mut shards = Vec::new();
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for (i, file) in shard_files.iter().enumerate() {
            shards.push(open_shard(&dir.join(file), i)?);
        }
        for shard in &shards {
            for entry in shard.entries() {
                if seen.insert(&entry.name, entry.shard).is_some() {
                    bail!(
                        InvalidInput,
                        "tensor {} is in two shards of {}",
                        entry.name,
                        path.display()
                    );
                }
            }
        }
        for (name, file) in weight_map {
            let file = file.as_str().unwrap_or_default();
            let held = seen
                .get(name.as_str())
                .is_some_and(|&s| shards[s].path.file_name() == Some(file.as_ref()));
            if !held {
                bail!(
                    InvalidInput,
                    "{}: the index puts tensor {name} in {file}, which does not hold it",
                    path.display()
                );
            }
        }
        let metadata = match index.get("metadata") {
            Some(Value::Object(m)) => m.clone(),
            _ => serde_json::Map::new(),
        };
        Ok(Checkpoint {
            path: path.to_path_buf(),
            index_metadata: Some(metadata),
            index: index_of(&shards),
            shards,
        })
    }
}

/// Where each tensor of `shards` is (names are unique across shards: the
/// caller checked).
fn index_of(shards: &[Shard]) -> HashMap<String, (usize, usize)> {
    shards
        .iter()
        .enumerate()
        .flat_map(|(s, shard)| {
            shard
                .entries
                .iter()
                .enumerate()
                .map(move |(i, e)| (e.name.clone(), (s, i)))
        })
        .collect()
}

/// `*.index.json` names a sharded checkpoint.
pub fn is_index_path(path: &Path) -> bool {
    path.to_string_lossy().ends_with(".json")
}

/// A small input (an index), read whole.
fn read_input_file(path: &Path) -> Result<Vec<u8>> {
    use std::io::Read as _;
    let (mut file, len) = open_input(path)?;
    let mut text = Vec::with_capacity(usize::try_from(len).unwrap_or(0).min(1 << 20));
    file.read_to_end(&mut text)
        .context(CheckpointErrorKind::InvalidInput, || {
            format!("cannot read {}", path.display())
        })?;
    Ok(text)
}

fn open_shard(path: &Path, index: usize) -> Result<Shard> {
    let (file, file_len) = open_input(path)?;
    let what = |problem: &str| format!("{}: {problem}", path.display());
    let (header_len, metadata) = read_header(&file, file_len).map_err(|e| match e {
        HeaderError::Read(e) => input_read_error(path, "the header", &e),
        HeaderError::Invalid(kind, problem) => error(kind, what(&problem)),
    })?;
    let data_start = 8 + header_len;
    let mut entries: Vec<Entry> = metadata
        .tensors()
        .into_iter()
        .map(|(name, info)| {
            let (s, e) = info.data_offsets;
            Entry {
                name,
                dtype: info.dtype,
                shape: info.shape.clone(),
                shard: index,
                start: data_start + s,
                end: data_start + e,
            }
        })
        .collect();
    // Empty tensors share offsets: the name breaks ties, for a stable order.
    entries.sort_by(|a, b| (a.start, &a.name).cmp(&(b.start, &b.name)));
    let shard = Shard {
        path: path.to_path_buf(),
        entries,
        metadata: metadata
            .metadata()
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect(),
        file,
    };
    Ok(shard)
}

/// Why [`read_header`] failed.
pub(crate) enum HeaderError {
    /// The bytes could not be read.
    Read(std::io::Error),
    /// They are not a valid safetensors header: the category and what is
    /// wrong.
    Invalid(CheckpointErrorKind, String),
}

/// Reads and validates the header of a safetensors file of `file_len`
/// bytes: the length field, then as much header as it announces (at most
/// safetensors' limit), never the data.
pub(crate) fn read_header(
    file: &File,
    file_len: u64,
) -> std::result::Result<(usize, Metadata), HeaderError> {
    let mut head = vec![0u8; file_len.min(8) as usize];
    read_exact_at(file, &mut head, 0).map_err(HeaderError::Read)?;
    if let Ok(field) = <[u8; 8]>::try_from(head.as_slice()) {
        let header_len = u64::from_le_bytes(field);
        if header_len <= MAX_HEADER_BYTES && 8 + header_len <= file_len {
            head.resize(8 + header_len as usize, 0);
            read_exact_at(file, &mut head[8..], 8).map_err(HeaderError::Read)?;
        }
    }
    check_header_in(&head, file_len).map_err(|(kind, problem)| HeaderError::Invalid(kind, problem))
}

/// Validates a whole safetensors buffer; on failure, the category and a
/// message that says what is wrong with it.
pub fn check_header(
    buf: &[u8],
) -> std::result::Result<(usize, Metadata), (CheckpointErrorKind, String)> {
    check_header_in(buf, buf.len() as u64)
}

/// [`check_header`] for a file of `len` bytes of which `head` holds the
/// start: the 8-byte length field and the header it announces, where the
/// file is long enough for them (the data need not be there).
pub fn check_header_in(
    head: &[u8],
    len: u64,
) -> std::result::Result<(usize, Metadata), (CheckpointErrorKind, String)> {
    let corrupt = |m: String| Err((CheckpointErrorKind::InvalidInput, m));
    let missing = || {
        corrupt(format!(
            "the header could not be read whole ({} of the file's {len} bytes given)",
            head.len()
        ))
    };
    if len < 8 {
        return corrupt(format!(
            "not a safetensors file: {len} bytes, shorter than the 8-byte header length"
        ));
    }
    let Some(field) = head.get(..8).and_then(|f| <[u8; 8]>::try_from(f).ok()) else {
        return missing();
    };
    let header_len = u64::from_le_bytes(field);
    if header_len > MAX_HEADER_BYTES {
        return corrupt(format!(
            "not a safetensors file: its first 8 bytes give a header length of {header_len} \
             bytes, more than safetensors allows"
        ));
    }
    if 8 + header_len > len {
        return corrupt(format!(
            "truncated or not a safetensors file: the header needs {header_len} bytes but the \
             file has only {} after the length field",
            len - 8
        ));
    }
    let Some(buf) = head.get(..8 + header_len as usize) else {
        return missing();
    };
    let header = &buf[8..];
    let Ok(text) = std::str::from_utf8(header) else {
        return corrupt("not a safetensors file: the header is not UTF-8 text".into());
    };
    let json: serde_json::Map<String, Value> = match serde_json::from_str(text) {
        Ok(j) => j,
        Err(e) => {
            return corrupt(format!(
                "corrupt safetensors header (not the JSON object it must be): {e}"
            ))
        }
    };
    for (name, info) in &json {
        if name == "__metadata__" {
            let strings = info
                .as_object()
                .is_some_and(|m| m.values().all(Value::is_string));
            if !strings {
                return corrupt(
                    "corrupt safetensors header: __metadata__ must map strings to \
                                strings"
                        .into(),
                );
            }
            continue;
        }
        let Some(dtype) = info.get("dtype").and_then(Value::as_str) else {
            return corrupt(format!(
                "corrupt safetensors header: tensor {name} has no dtype"
            ));
        };
        if serde_json::from_value::<Dtype>(Value::String(dtype.into())).is_err() {
            return Err((
                CheckpointErrorKind::Unquantizable,
                format!(
                    "tensor {name} has dtype {dtype}, which tch-quant does not support \
                     (supported: BOOL, U8, I8, I16, U16, I32, U32, I64, U64, F16, BF16, F32, F64, \
                     F8_E4M3, F8_E5M2)"
                ),
            ));
        }
    }
    // `buf` ends with the header, so safetensors finds the data missing
    // unless there is none, after checking everything else.
    let metadata = match SafeTensors::read_metadata(buf) {
        Ok((_, metadata)) => metadata,
        Err(SafeTensorError::MetadataIncompleteBuffer) => {
            match serde_json::from_str::<Metadata>(text) {
                Ok(metadata) => metadata,
                Err(e) => return corrupt(format!("corrupt safetensors header: {e}")),
            }
        }
        Err(e) => return corrupt(header_problem(e)),
    };
    // Offsets start at 0 and are contiguous (safetensors checked), so the
    // largest end is the data's length.
    let data_len = metadata
        .tensors()
        .values()
        .map(|info| info.data_offsets.1 as u64)
        .max()
        .unwrap_or(0);
    if data_len != len - 8 - header_len {
        return corrupt(format!(
            "truncated or corrupt: the header describes {data_len} bytes of tensor data but the \
             file holds {}",
            len - 8 - header_len
        ));
    }
    Ok((header_len as usize, metadata))
}

/// What a safetensors header error means, in words.
fn header_problem(e: SafeTensorError) -> String {
    match e {
        SafeTensorError::InvalidOffset(name) => format!(
            "corrupt safetensors header: the data offsets of tensor {name} overlap another \
             tensor or leave a gap"
        ),
        SafeTensorError::TensorInvalidInfo => "corrupt safetensors header: a tensor's shape and \
                                               dtype do not match the size of its data"
            .into(),
        SafeTensorError::ValidationOverflow => {
            "corrupt safetensors header: a tensor's shape is too large to address".into()
        }
        SafeTensorError::InvalidHeaderDeserialization => "corrupt safetensors header: an entry \
                                                          lacks dtype, shape or data_offsets, \
                                                          or has values of the wrong type"
            .into(),
        e => format!("corrupt safetensors header: {e:?}"),
    }
}

impl Checkpoint {
    /// Refuses a checkpoint tch-quant wrote: quantizing it again would lose
    /// its records.
    pub fn ensure_not_quantized(&self) -> Result<()> {
        for shard in &self.shards {
            if shard.metadata.contains_key(format::KEY_FORMAT) {
                bail!(
                    InvalidInput,
                    "{} was written by tch-quant quantize; run tch-quant dequantize on it first",
                    shard.path.display()
                );
            }
        }
        Ok(())
    }

    /// The quantized tensors a tch-quant checkpoint records, by name, each
    /// with the shard that holds it; empty for a checkpoint tch-quant did
    /// not write.
    ///
    /// # Errors
    /// Metadata that is not tch-quant's format 1, or records that make no
    /// sense.
    pub fn quantized_records(&self) -> Result<BTreeMap<String, (usize, Record)>> {
        let mut records = BTreeMap::new();
        for (i, shard) in self.shards.iter().enumerate() {
            if let Some(info) = FileInfo::from_metadata(&shard.metadata)? {
                records.extend(info.tensors.into_iter().map(|(n, r)| (n, (i, r))));
            }
        }
        Ok(records)
    }

    /// Loads quantized tensor `name` (recorded in shard `shard`) onto
    /// `device`; also returns the bytes its stored tensors take.
    ///
    /// # Errors
    /// A stored tensor the record names that the shard lacks; stored
    /// tensors that do not fit the record.
    pub fn load_quantized(
        &self,
        shard: usize,
        name: &str,
        record: &Record,
        device: Device,
    ) -> Result<(AffineQuantizedTensor, usize)> {
        let mut bytes = 0;
        let mut load = |tensor: &str| -> Result<Tensor> {
            match self.entry(tensor) {
                Some(entry) if entry.shard == shard => {
                    bytes += entry.num_bytes();
                    self.load(entry, device)
                }
                _ => bail!(
                    InvalidInput,
                    "{}: the metadata lists quantized tensor {name}, but {tensor} is missing",
                    self.shards[shard].path.display()
                ),
            }
        };
        let qdata = format::qdata_names(name, &record.codes)
            .iter()
            .map(|n| load(n))
            .collect::<Result<Vec<_>>>()?;
        let scale = load(&format::scale_name(name))?;
        let zero_point = match record.zero_point_dtype {
            Some(_) => Some(load(&format::zero_point_name(name))?),
            None => None,
        };
        let q = record.to_tensor(name, qdata, scale, zero_point)?;
        Ok((q, bytes))
    }
}

/// Every quantized tensor of the tch-quant checkpoint at `path`, loaded
/// onto `device`.
///
/// # Errors
/// A file tch-quant did not write; those of [`Checkpoint::open`] and
/// [`Checkpoint::load_quantized`].
pub fn read_quantized(
    path: &Path,
    device: Device,
) -> Result<BTreeMap<String, AffineQuantizedTensor>> {
    let checkpoint = Checkpoint::open(path)?;
    let records = checkpoint.quantized_records()?;
    if records.is_empty() {
        bail!(
            InvalidInput,
            "{} holds no tensor quantized by tch-quant",
            path.display()
        );
    }
    records
        .iter()
        .map(|(name, (shard, record))| {
            let (q, _) = checkpoint.load_quantized(*shard, name, record, device)?;
            Ok((name.clone(), q))
        })
        .collect()
}

/// A tensor's shape as libtorch sizes. safetensors allows any `usize`
/// dims whose byte count fits, so a crafted header can give dims (or, with
/// a zero dim elsewhere, products) beyond `i64`: those are refused as
/// unreadable input rather than wrapped around.
pub fn shape_i64(name: &str, shape: &[usize]) -> Result<Vec<i64>> {
    let too_large = || {
        error(
            CheckpointErrorKind::InvalidInput,
            format!(
                "tensor {name} has shape {shape:?}, whose element count libtorch cannot address"
            ),
        )
    };
    let dims = shape
        .iter()
        .map(|&d| i64::try_from(d).map_err(|_| too_large()))
        .collect::<Result<Vec<i64>>>()?;
    dims.iter()
        .try_fold(1i64, |n, &d| n.checked_mul(d))
        .ok_or_else(too_large)?;
    Ok(dims)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(header: &str, data: &[u8]) -> Vec<u8> {
        let mut buf = (header.len() as u64).to_le_bytes().to_vec();
        buf.extend_from_slice(header.as_bytes());
        buf.extend_from_slice(data);
        buf
    }

    #[test]
    fn shapes_beyond_i64_are_input_errors() {
        assert_eq!(shape_i64("w", &[2, 3]).unwrap(), vec![2, 3]);
        assert_eq!(shape_i64("w", &[]).unwrap(), Vec::<i64>::new());
        let err = shape_i64("w", &[1 << 62, 2, 0]).unwrap_err();
        assert_eq!(
            err.checkpoint_kind(),
            Some(CheckpointErrorKind::InvalidInput)
        );
        assert!(shape_i64("w", &[usize::MAX, 0]).is_err());
    }

    /// With a memory map, reading a tensor of a file truncated after it
    /// was opened raised SIGBUS and killed the process.
    #[test]
    fn an_input_truncated_while_open_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.safetensors");
        let header = r#"{"w.weight":{"dtype":"F32","shape":[1024,64],"data_offsets":[0,262144]}}"#;
        std::fs::write(&path, file(header, &[0; 262_144])).unwrap();
        let checkpoint = Checkpoint::open(&path).unwrap();
        let entry = checkpoint.entry("w.weight").unwrap().clone();
        assert_eq!(
            checkpoint.load(&entry, Device::Cpu).unwrap().size(),
            [1024, 64]
        );
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(4096)
            .unwrap();
        for err in [
            checkpoint.load(&entry, Device::Cpu).unwrap_err(),
            checkpoint.read(&entry).unwrap_err(),
            checkpoint.copy_to(&entry, &mut Vec::new()).unwrap_err(),
        ] {
            assert_eq!(
                err.checkpoint_kind(),
                Some(CheckpointErrorKind::InvalidInput)
            );
            assert!(err.to_string().contains("truncated"), "{err}");
        }
    }

    #[test]
    fn header_problems_have_their_own_messages() {
        let good = r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#;
        assert!(check_header(&file(good, &[0; 8])).is_ok());
        let msg = |buf: &[u8]| check_header(buf).err().unwrap();
        assert!(msg(&file(good, &[0; 6])).1.contains("truncated"));
        assert!(msg(b"abc").1.contains("not a safetensors file"));
        assert!(msg(&[0xff; 16]).1.contains("header length"));
        assert!(msg(&file("{\"a\":", &[])).1.contains("not the JSON object"));
        let f8 = r#"{"a":{"dtype":"F8_E8M0","shape":[2],"data_offsets":[0,2]}}"#;
        assert_eq!(
            msg(&file(f8, &[0; 2])).0,
            CheckpointErrorKind::Unquantizable
        );
        let gap = r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#;
        assert!(msg(&file(gap, &[0; 12])).1.contains("overlap"));
        let size = r#"{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#;
        assert!(msg(&file(size, &[0; 8])).1.contains("shape and dtype"));
    }
}
