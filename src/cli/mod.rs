//! The subcommands of the command line.

pub mod bench;
pub mod import_onnx;
pub mod main_job;
pub mod selftest;
pub mod train;
pub mod tune;
pub mod verify;

use gru_wgpu::gpu::{ContextOptions, GpuContext};

/// Opens the GPU the user asked for.
pub fn open_gpu(adapter: Option<&str>) -> gru_wgpu::Result<GpuContext> {
    GpuContext::with_options(ContextOptions {
        adapter: adapter.map(String::from),
        ..Default::default()
    })
}

/// Opens the GPU the user asked for, or prints why it could not be opened
/// ([`report_gpu_error`], no alternative) and gives exit status 2.
pub fn open_gpu_or_report(adapter: Option<&str>) -> Result<GpuContext, std::process::ExitCode> {
    open_gpu(adapter).map_err(|e| {
        report_gpu_error(&e, None);
        std::process::ExitCode::from(2)
    })
}

/// Checks, before any work, that a file can be written at `path` (its
/// folder exists and is writable): a plot that cannot be written is refused
/// at once, not after a whole run. Leaves no file behind where there was none.
pub fn check_writable(path: &std::path::Path) -> Result<(), String> {
    let existed = path.exists();
    std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .map_err(|e| e.to_string())?;
    if !existed {
        let _ = std::fs::remove_file(path);
    }
    Ok(())
}

/// Prints a GPU that could not be opened, with the hint to install a
/// software Vulkan device only where wgpu sees no adapter at all (not where
/// adapters exist and none matches the selection). `alt` names what the user
/// can do instead, such as "or use --device cpu".
pub fn report_gpu_error(e: &gru_wgpu::GruError, alt: Option<&str>) {
    eprintln!("error: {e}");
    if let Some(hint) = no_adapter_hint(e) {
        match alt {
            Some(alt) => eprintln!("({hint}; {alt})"),
            None => eprintln!("({hint})"),
        }
    }
}

/// The install hint, where the error is that no adapter exists at all.
pub fn no_adapter_hint(e: &gru_wgpu::GruError) -> Option<&'static str> {
    (matches!(e, gru_wgpu::GruError::NoAdapter(_)) && gru_wgpu::gpu::list_adapters().is_empty())
        .then_some(
            "no GPU adapter exists on this machine; on Linux, `apt-get install mesa-vulkan-drivers` gives a software Vulkan device",
        )
}

/// One line of a chart: its label and points.
pub struct Series {
    pub label: String,
    pub points: Vec<(f64, f64)>,
    /// Mark each point with a dot.
    pub dots: bool,
}

/// A line chart written as SVG, with a legend; the axes start at 0.
pub fn line_chart(
    path: &std::path::Path,
    caption: &str,
    x_desc: &str,
    y_desc: &str,
    series: &[Series],
) -> Result<(), String> {
    use plotters::prelude::*;
    let all = || series.iter().flat_map(|s| s.points.iter());
    let xmax = all().map(|p| p.0).fold(1e-9, f64::max) * 1.05;
    let ymax = all().map(|p| p.1).fold(1e-9, f64::max) * 1.15;
    let err = |e: &dyn std::fmt::Display| e.to_string();
    let root = SVGBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(caption, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..xmax, 0.0..ymax)
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .draw()
        .map_err(|e| err(&e))?;
    for (i, s) in series.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(s.points.clone(), color.stroke_width(2)))
            .map_err(|e| err(&e))?
            .label(s.label.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
            });
        if s.dots {
            chart
                .draw_series(s.points.iter().map(|&p| Circle::new(p, 3, color.filled())))
                .map_err(|e| err(&e))?;
        }
    }
    chart
        .configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE.mix(0.8))
        .draw()
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))?;
    Ok(())
}
