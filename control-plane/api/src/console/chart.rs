//! Bar charts as plain SVG, laid out here and drawn by a template: no script, nothing fetched.
//! A chart is stacked bars (one series, or several with a class each: 2xx, 4xx, 5xx), a
//! value axis from 0 to the largest bar, and a few dated ticks under the bars. Each bar part
//! carries a `<title>` with its date and value, so a pointer shows the figure.

/// The drawing area (SVG user units) and the margins the axes take.
pub const WIDTH: f64 = 1000.0;
pub const HEIGHT: f64 = 220.0;
const LEFT: f64 = 56.0;
const BOTTOM: f64 = 28.0;
const TOP: f64 = 8.0;

pub struct Part {
    pub y: f64,
    pub h: f64,
    pub class: &'static str,
    pub title: String,
}

pub struct Bar {
    pub x: f64,
    pub w: f64,
    pub parts: Vec<Part>,
}

pub struct Tick {
    pub x: f64,
    pub label: String,
}

pub struct Chart {
    pub bars: Vec<Bar>,
    pub ticks: Vec<Tick>,
    /// The value axis' top (as its label shows it), and where its label and the baseline sit.
    pub max: String,
    pub left: f64,
    pub baseline: f64,
    pub top: f64,
    pub right: f64,
    /// Nothing counted in the window.
    pub empty: bool,
}

/// One series: its CSS class, its name (for titles), its value per bucket.
pub struct Series<'a> {
    pub class: &'static str,
    pub name: &'a str,
    pub values: &'a [i64],
}

/// Stacked bars for buckets dated `labels`, at most `ticks` dates shown under them.
pub fn bars(labels: &[String], series: &[Series<'_>], ticks: usize) -> Chart {
    scaled_bars(labels, series, ticks, 0)
}

/// [`bars`] of amounts held as integers of 10^-`decimals` (money: credits in ten-thousandths),
/// labelled and titled as the decimals they are.
pub fn scaled_bars(labels: &[String], series: &[Series<'_>], ticks: usize, decimals: u32) -> Chart {
    let shown = |v: i64| rust_decimal::Decimal::new(v, decimals).normalize().to_string();
    let n = labels.len().max(1);
    let totals: Vec<i64> = (0..labels.len())
        .map(|i| series.iter().map(|s| s.values.get(i).copied().unwrap_or(0)).sum())
        .collect();
    let max = totals.iter().copied().max().unwrap_or(0);
    let (plot_w, plot_h) = (WIDTH - LEFT, HEIGHT - BOTTOM - TOP);
    let slot = plot_w / n as f64;
    let scale = |v: i64| if max == 0 { 0.0 } else { v as f64 / max as f64 * plot_h };
    let baseline = HEIGHT - BOTTOM;
    let bars = labels
        .iter()
        .enumerate()
        .map(|(i, label)| {
            let mut y = baseline;
            let parts = series
                .iter()
                .filter_map(|s| {
                    let v = s.values.get(i).copied().unwrap_or(0);
                    (v > 0).then(|| {
                        let h = scale(v);
                        y -= h;
                        Part {
                            y,
                            h,
                            class: s.class,
                            title: format!("{label}: {} {}", shown(v), s.name),
                        }
                    })
                })
                .collect();
            Bar {
                x: LEFT + i as f64 * slot + slot * 0.1,
                w: (slot * 0.8).max(1.0),
                parts,
            }
        })
        .collect();
    let step = labels.len().div_ceil(ticks.max(1)).max(1);
    let ticks = labels
        .iter()
        .enumerate()
        .step_by(step)
        .map(|(i, label)| Tick {
            x: LEFT + i as f64 * slot + slot / 2.0,
            label: label.clone(),
        })
        .collect();
    Chart {
        bars,
        ticks,
        max: shown(max),
        left: LEFT,
        baseline,
        top: TOP,
        right: WIDTH,
        empty: max == 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_stack_and_scale_to_the_largest() {
        let labels: Vec<String> = (0..4).map(|i| format!("d{i}")).collect();
        let ok = [1, 0, 4, 2];
        let bad = [1, 0, 0, 2];
        let chart = bars(
            &labels,
            &[
                Series {
                    class: "ok",
                    name: "2xx",
                    values: &ok,
                },
                Series {
                    class: "bad",
                    name: "5xx",
                    values: &bad,
                },
            ],
            2,
        );
        assert_eq!(chart.max, "4");
        assert!(!chart.empty);
        let tallest = &chart.bars[2];
        assert_eq!(tallest.parts.len(), 1);
        assert!(
            (tallest.parts[0].h - (HEIGHT - BOTTOM - TOP)).abs() < 1e-9,
            "the largest bar fills the plot"
        );
        assert!(chart.bars[1].parts.is_empty(), "nothing counted, nothing drawn");
        let last = &chart.bars[3].parts;
        assert_eq!(last.len(), 2);
        assert!(
            (last[1].y + last[1].h - last[0].y).abs() < 1e-9,
            "the second part sits on the first"
        );
        assert_eq!(last[1].title, "d3: 2 5xx");
        assert_eq!(
            chart.ticks.iter().map(|t| t.label.as_str()).collect::<Vec<_>>(),
            ["d0", "d2"]
        );
        assert!(
            bars(
                &labels,
                &[Series {
                    class: "ok",
                    name: "hits",
                    values: &[0; 4]
                }],
                3
            )
            .empty
        );
    }
}
