//! Text tables for people: each column as wide as its widest cell.
//!
//! Cells are padded by hand rather than with a format width (`{:<w$}`):
//! format widths stop at 65,535 and panic beyond, and a tensor name may be
//! longer than that. A long cell widens its column and is shown whole.

use std::fmt::Write as _;

/// How a column's cells sit in its width.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    /// Text: padded on the right.
    Left,
    /// Numbers: padded on the left.
    Right,
}

/// Writes `header` and `rows` as columns two spaces apart, each as wide (in
/// characters) as its widest cell, with no trailing spaces.
pub fn write_table<const N: usize>(
    out: &mut String,
    header: [&str; N],
    align: [Align; N],
    rows: &[[String; N]],
) {
    let width = |cell: &str| cell.chars().count();
    let mut widths = header.map(width);
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(width(cell));
        }
    }
    let header = header.map(str::to_string);
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            let pad = " ".repeat(widths[i] - width(cell));
            match align[i] {
                Align::Left => {
                    line.push_str(cell);
                    line.push_str(&pad);
                }
                Align::Right => {
                    line.push_str(&pad);
                    line.push_str(cell);
                }
            }
        }
        let _ = writeln!(out, "{}", line.trim_end());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_fit_their_widest_cell_however_wide() {
        let mut out = String::new();
        let rows = [
            ["a".to_string(), "1".to_string()],
            ["bé".to_string(), "22".to_string()],
        ];
        write_table(&mut out, ["name", "n"], [Align::Left, Align::Right], &rows);
        assert_eq!(out, "name   n\na      1\nbé    22\n");

        // Beyond the largest format width (u16::MAX).
        let long = "x".repeat(70_000);
        let mut out = String::new();
        write_table(
            &mut out,
            ["name", "n"],
            [Align::Left, Align::Right],
            &[[long.clone(), "1".to_string()]],
        );
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0].len(), 70_000 + 3);
        assert_eq!(lines[1], format!("{long}  1"));
    }
}
