//! `herald bench plot`: SVG charts from the JSON lines of fan-out runs —
//! deliveries/s and latency percentiles against the number of subscribers,
//! one line per server (`--label`). Several runs at the same point are
//! reduced to their median.

use std::collections::BTreeMap;
use std::path::Path;

use plotters::prelude::*;

use super::args::PlotArgs;
use super::report::Report;
use super::BenchError;

/// A server's points: subscribers → (deliveries/s, p50 ms, p99 ms) medians.
type Series = BTreeMap<String, Vec<(u64, f64, f64, f64)>>;

/// Reads the reports and writes `fanout-throughput.svg` and `fanout-latency.svg`.
pub fn run(args: &PlotArgs) -> Result<String, BenchError> {
    let text = std::fs::read_to_string(&args.input)
        .map_err(|e| BenchError::Plot(format!("{}: {e}", args.input.display())))?;
    let reports: Vec<Report> = text
        .lines()
        .filter(|l| l.trim_start().starts_with('{'))
        .filter_map(|l| serde_json::from_str(l).ok())
        .filter(|r: &Report| r.scenario == "fanout")
        .collect();
    let series = medians(&reports);
    if series.is_empty() {
        return Err(BenchError::Plot(format!(
            "no fan-out reports in {}",
            args.input.display()
        )));
    }
    std::fs::create_dir_all(&args.out_dir)?;
    let throughput = args.out_dir.join("fanout-throughput.svg");
    let latency = args.out_dir.join("fanout-latency.svg");
    draw_throughput(&throughput, &args.title, &series).map_err(BenchError::Plot)?;
    draw_latency(&latency, &args.title, &series).map_err(BenchError::Plot)?;
    Ok(format!(
        "wrote {} and {}\n",
        throughput.display(),
        latency.display()
    ))
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    match values.len() {
        0 => 0.0,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

fn medians(reports: &[Report]) -> Series {
    let mut grouped: BTreeMap<(String, u64), Vec<&Report>> = BTreeMap::new();
    for r in reports {
        let label = r.label.clone().unwrap_or_else(|| "server".into());
        grouped.entry((label, r.connections)).or_default().push(r);
    }
    let mut series = Series::new();
    for ((label, subscribers), runs) in grouped {
        let pct = |f: fn(&super::stats::Percentiles) -> u64| {
            median(
                runs.iter()
                    .filter_map(|r| r.latency_us.as_ref())
                    .map(|p| f(p) as f64 / 1000.0)
                    .collect(),
            )
        };
        let point = (
            subscribers,
            median(runs.iter().map(|r| r.throughput).collect()),
            pct(|p| p.p50),
            pct(|p| p.p99),
        );
        series.entry(label).or_default().push(point);
    }
    series
}

const COLOURS: [RGBColor; 4] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0x94, 0x67, 0xbd),
];

fn x_range(series: &Series) -> std::ops::Range<u64> {
    let max = series.values().flatten().map(|p| p.0).max().unwrap_or(1);
    0..max + max / 20 + 1
}

fn draw_throughput(path: &Path, title: &str, series: &Series) -> Result<(), String> {
    let root = SVGBackend::new(path, (800, 480)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let top = series.values().flatten().map(|p| p.1).fold(1.0, f64::max);
    let mut chart = ChartBuilder::on(&root)
        .caption(format!("{title}: deliveries/s"), ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(x_range(series), 0.0..top * 1.1)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc("subscribers")
        .y_desc("deliveries/s")
        .draw()
        .map_err(|e| e.to_string())?;
    for (i, (label, points)) in series.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let line: Vec<(u64, f64)> = points.iter().map(|p| (p.0, p.1)).collect();
        chart
            .draw_series(LineSeries::new(line.clone(), colour.stroke_width(2)))
            .map_err(|e| e.to_string())?
            .label(label.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], colour));
        chart
            .draw_series(line.into_iter().map(|p| Circle::new(p, 3, colour.filled())))
            .map_err(|e| e.to_string())?;
    }
    legend(&mut chart)?;
    root.present().map_err(|e| e.to_string())
}

fn draw_latency(path: &Path, title: &str, series: &Series) -> Result<(), String> {
    let root = SVGBackend::new(path, (800, 480)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let values = series.values().flatten().flat_map(|p| [p.2, p.3]);
    let top = values.clone().fold(0.01, f64::max);
    let bottom = values.fold(top, f64::min).max(0.01);
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("{title}: latency p50 (solid) and p99 (dashed)"),
            ("sans-serif", 22),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(x_range(series), (bottom / 2.0..top * 2.0).log_scale())
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc("subscribers")
        .y_desc("ms (log scale)")
        .draw()
        .map_err(|e| e.to_string())?;
    for (i, (label, points)) in series.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let p50: Vec<(u64, f64)> = points.iter().map(|p| (p.0, p.2)).collect();
        let p99: Vec<(u64, f64)> = points.iter().map(|p| (p.0, p.3)).collect();
        chart
            .draw_series(LineSeries::new(p50.clone(), colour.stroke_width(2)))
            .map_err(|e| e.to_string())?
            .label(format!("{label} p50"))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], colour));
        chart
            .draw_series(DashedLineSeries::new(
                p99.clone(),
                6,
                4,
                colour.stroke_width(2),
            ))
            .map_err(|e| e.to_string())?
            .label(format!("{label} p99"))
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 8, y)], colour.stroke_width(2))
            });
        chart
            .draw_series(
                p50.into_iter()
                    .chain(p99)
                    .map(|p| Circle::new(p, 3, colour.filled())),
            )
            .map_err(|e| e.to_string())?;
    }
    legend(&mut chart)?;
    root.present().map_err(|e| e.to_string())
}

fn legend<'a, DB: DrawingBackend + 'a, CT: plotters::coord::CoordTranslate>(
    chart: &mut ChartContext<'a, DB, CT>,
) -> Result<(), String> {
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::stats::Percentiles;

    #[test]
    fn draws_svg_files() {
        let dir = std::env::temp_dir().join(format!("herald-plot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let input = dir.join("runs.jsonl");
        let mut lines = String::new();
        for (label, subs, tput) in [
            ("herald", 100, 5e4),
            ("herald", 100, 6e4),
            ("nchan", 100, 4e4),
            ("herald", 1000, 2e5),
            ("nchan", 1000, 1e5),
        ] {
            let r = Report {
                scenario: "fanout".into(),
                label: Some(label.into()),
                connections: subs,
                throughput: tput,
                latency_us: Some(Percentiles {
                    p50: 300,
                    p99: 2000,
                    ..Default::default()
                }),
                ..Default::default()
            };
            lines.push_str(&r.json());
            lines.push('\n');
        }
        std::fs::write(&input, lines).unwrap();
        let out = run(&PlotArgs {
            input,
            out_dir: dir.clone(),
            title: "t".into(),
        })
        .unwrap();
        assert!(out.contains("fanout-latency.svg"));
        let svg = std::fs::read_to_string(dir.join("fanout-throughput.svg")).unwrap();
        assert!(svg.contains("<svg") && svg.contains("nchan"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
