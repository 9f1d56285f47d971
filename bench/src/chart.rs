//! Pictures of a `vs-etcd` run, as SVG (plotters): throughput and p99 per
//! concurrency level, chat beside etcd, and the failover times of each kill.
//! BENCHMARKS.md shows the committed ones; `chat-bench vs-etcd --svg DIR`
//! draws them again from a new run.

use std::path::{Path, PathBuf};
use std::time::Duration;

use plotters::prelude::*;

use crate::compare::Median;

const SIZE: (u32, u32) = (760, 420);
const CHAT: RGBColor = RGBColor(31, 119, 180);
const ETCD: RGBColor = RGBColor(214, 39, 40);

/// One line of a chart: a name, a colour, its points.
struct Line {
    name: &'static str,
    color: RGBColor,
    points: Vec<(f64, f64)>,
}

/// Writes `throughput.svg`, `p99.svg` and `failover.svg` into `dir`.
///
/// # Errors
/// When a file cannot be written.
pub fn write(
    dir: &Path,
    levels: &[Median],
    chat_failovers: &[Duration],
    etcd_failovers: &[Duration],
) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let labels: Vec<String> = levels.iter().map(|m| m.clients.to_string()).collect();
    let per_level = |f: &dyn Fn(&Median) -> f64| levels.iter().enumerate().map(|(i, m)| (i as f64, f(m))).collect();
    let throughput = dir.join("throughput.svg");
    chart(
        &throughput,
        "SendMessage vs etcd Put: throughput (median of rounds)",
        ("concurrent clients", &labels),
        "operations per second",
        &[
            Line { name: "replicated-chat", color: CHAT, points: per_level(&|m| m.chat_per_second) },
            Line { name: "etcd 3.4", color: ETCD, points: per_level(&|m| m.etcd_per_second) },
        ],
    )?;
    let p99 = dir.join("p99.svg");
    chart(
        &p99,
        "SendMessage vs etcd Put: p99 latency (median of rounds)",
        ("concurrent clients", &labels),
        "p99 (ms)",
        &[
            Line { name: "replicated-chat", color: CHAT, points: per_level(&|m| ms(m.chat_p99)) },
            Line { name: "etcd 3.4", color: ETCD, points: per_level(&|m| ms(m.etcd_p99)) },
        ],
    )?;
    let failover = dir.join("failover.svg");
    let kills = chat_failovers.len().max(etcd_failovers.len());
    let kill_labels: Vec<String> = (1..=kills).map(|k| k.to_string()).collect();
    let sorted = |samples: &[Duration]| {
        let mut s: Vec<f64> = samples.iter().map(|d| ms(*d)).collect();
        s.sort_by(f64::total_cmp);
        s.into_iter().enumerate().map(|(i, v)| (i as f64, v)).collect()
    };
    chart(
        &failover,
        "kill -9 of the leader → first acknowledged write (each kill, sorted)",
        ("kill (sorted by time)", &kill_labels),
        "failover (ms)",
        &[
            Line { name: "replicated-chat", color: CHAT, points: sorted(chat_failovers) },
            Line { name: "etcd 3.4", color: ETCD, points: sorted(etcd_failovers) },
        ],
    )?;
    Ok(vec![throughput, p99, failover])
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// A line chart over categories (`x.1`, evenly spaced), from 0 up.
fn chart(path: &Path, title: &str, x: (&str, &[String]), y: &str, lines: &[Line]) -> anyhow::Result<()> {
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(draw)?;
    let top = lines.iter().flat_map(|l| l.points.iter().map(|p| p.1)).fold(0.0, f64::max).max(1.0) * 1.15;
    let (x_name, categories) = x;
    let last = categories.len().saturating_sub(1) as f64;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(64)
        .build_cartesian_2d(-0.3f64..last + 0.3, 0f64..top)
        .map_err(draw)?;
    let name_of = |v: &f64| {
        let i = v.round();
        if (v - i).abs() < 0.01 && i >= 0.0 {
            categories.get(i as usize).cloned().unwrap_or_default()
        } else {
            String::new()
        }
    };
    chart
        .configure_mesh()
        .x_labels(categories.len() * 4 + 1)
        .x_label_formatter(&name_of)
        .y_label_formatter(&|v| format!("{v:.0}"))
        .x_desc(x_name)
        .y_desc(y)
        .max_light_lines(1)
        .disable_x_mesh()
        .draw()
        .map_err(draw)?;
    for line in lines {
        let color = line.color;
        chart
            .draw_series(LineSeries::new(line.points.iter().copied(), color.stroke_width(2)))
            .map_err(draw)?
            .label(line.name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
        chart.draw_series(line.points.iter().map(|&p| Circle::new(p, 4, color.filled()))).map_err(draw)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(draw)?;
    root.present().map_err(draw)?;
    Ok(())
}

fn draw(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("drawing a chart: {e}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_becomes_three_svg_charts_with_both_systems() {
        let level = |clients, chat: f64, etcd: f64| Median {
            clients,
            chat_per_second: chat,
            chat_p99: Duration::from_millis(2),
            etcd_per_second: etcd,
            etcd_p99: Duration::from_millis(8),
            ratio: chat / etcd,
        };
        let levels = [level(1, 1030.0, 840.0), level(16, 4000.0, 2600.0), level(64, 7000.0, 3600.0)];
        let ms = Duration::from_millis;
        let dir = tempfile::tempdir().unwrap();
        let files = write(dir.path(), &levels, &[ms(1200), ms(900)], &[ms(2000), ms(2100)]).unwrap();
        assert_eq!(files.len(), 3);
        for file in files {
            let svg = std::fs::read_to_string(&file).unwrap();
            assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"), "{}", file.display());
            assert!(svg.contains("replicated-chat") && svg.contains("etcd 3.4"), "legend in {}", file.display());
            assert!(svg.matches("<circle").count() >= 4, "points in {}", file.display());
        }
        let throughput = std::fs::read_to_string(dir.path().join("throughput.svg")).unwrap();
        let texts: Vec<&str> = throughput.lines().map(str::trim).collect();
        assert!(texts.contains(&"64") && texts.contains(&"concurrent clients"), "axis labels");
    }
}
