//! The overview's chart: licenses minted per day as an SVG drawn here, no
//! chart library and no script.

use std::fmt::Write;

/// One day's bar: sales (minted from a provider's event) and licenses
/// minted by hand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Day {
    pub sales: i64,
    pub manual: i64,
}

const WIDTH: f64 = 600.0;
const HEIGHT: f64 = 160.0;
const TOP: f64 = 14.0;
const BOTTOM: f64 = 18.0;

/// An SVG bar chart of `days` (oldest first), labelled for screen readers;
/// `labels` names the first and the last day.
pub fn svg(days: &[Day], first: &str, last: &str) -> String {
    let max = days
        .iter()
        .map(|d| d.sales + d.manual)
        .max()
        .unwrap_or(0)
        .max(1);
    let total: i64 = days.iter().map(|d| d.sales + d.manual).sum();
    let slot = WIDTH / days.len().max(1) as f64;
    let bar = (slot * 0.7).max(1.0);
    let scale = (HEIGHT - TOP - BOTTOM) / max as f64;
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{total} licenses minted from {first} to {last}" xmlns="http://www.w3.org/2000/svg">"#
    );
    let base = HEIGHT - BOTTOM;
    for (i, d) in days.iter().enumerate() {
        let x = i as f64 * slot + (slot - bar) / 2.0;
        let sales_h = d.sales as f64 * scale;
        let manual_h = d.manual as f64 * scale;
        if d.sales > 0 {
            let _ = write!(
                out,
                r#"<rect class="sales" x="{x:.1}" y="{:.1}" width="{bar:.1}" height="{sales_h:.1}"><title>{} sold</title></rect>"#,
                base - sales_h,
                d.sales
            );
        }
        if d.manual > 0 {
            let _ = write!(
                out,
                r#"<rect class="manual" x="{x:.1}" y="{:.1}" width="{bar:.1}" height="{manual_h:.1}"><title>{} by hand</title></rect>"#,
                base - sales_h - manual_h,
                d.manual
            );
        }
    }
    let _ = write!(
        out,
        r#"<line x1="0" y1="{base}" x2="{WIDTH}" y2="{base}" class="axis"/><text x="0" y="{HEIGHT}" class="label">{first}</text><text x="{WIDTH}" y="{HEIGHT}" text-anchor="end" class="label">{last}</text><text x="0" y="10" class="label">max {max}/day</text></svg>"#
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_scale_to_the_busiest_day_and_empty_days_draw_nothing() {
        let days = [
            Day {
                sales: 0,
                manual: 0,
            },
            Day {
                sales: 4,
                manual: 0,
            },
            Day {
                sales: 1,
                manual: 1,
            },
        ];
        let svg = svg(&days, "2026-11-01", "2026-11-03");
        assert_eq!(svg.matches("<rect").count(), 3);
        // The busiest day's bar spans the plot's whole height.
        assert!(svg.contains(r#"height="128.0"><title>4 sold"#), "{svg}");
        assert!(svg.contains("6 licenses minted from 2026-11-01 to 2026-11-03"));
        // No data: an empty chart, not a division by zero.
        let empty = super::svg(&[], "a", "b");
        assert!(empty.starts_with("<svg") && !empty.contains("<rect"));
    }
}
