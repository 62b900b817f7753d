//! Small path helpers shared by the output plan and the writers.

use std::path::Path;

/// The directory a path lives in (`.` for a bare file name).
pub fn dir_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// The last component of a path, as text (empty for none).
pub fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_names_live_in_the_current_directory() {
        assert_eq!(dir_of(Path::new("a.safetensors")), Path::new("."));
        assert_eq!(dir_of(Path::new("out/a.safetensors")), Path::new("out"));
        assert_eq!(file_name(Path::new("out/a.safetensors")), "a.safetensors");
    }
}
