//! The regression head of the training example (`shaders/head.wgsl`): a
//! linear layer on a GRU's last hidden state with the mean squared error,
//! forward and backward.

use crate::error::Result;
use crate::gpu::ops::params_struct;
use crate::gpu::pipeline::{bindings, u32_of, Grid, KernelSpec};
use crate::gpu::recorder::Recorder;

pub(crate) const SOURCE: &str = include_str!("../../../shaders/head.wgsl");

params_struct! {
    /// `Params` of `head.wgsl`.
    HeadParams {
        batch: u32,
        hidden: u32,
        gx: u32,
        _p0: u32,
    }
}

impl Grid for HeadParams {
    fn at(&mut self, off: [u32; 3]) {
        self.gx = off[0];
    }
}

const fn spec(entry: &'static str) -> KernelSpec {
    let bindings =
        bindings![Read, Read, Read, ReadWrite, ReadWrite, ReadWrite, ReadWrite, ReadWrite];
    KernelSpec::new::<HeadParams>(("head.wgsl", SOURCE), entry, bindings)
}

const FORWARD: KernelSpec = spec("forward");
const MSE: KernelSpec = spec("mse");
const BACKWARD: KernelSpec = spec("backward");
const PARAM_GRADS: KernelSpec = spec("param_grads");

/// Every kernel of this module, as it is dispatched (see
/// [`kernel_variants`](super::kernel_variants)).
#[cfg_attr(not(feature = "test-hooks"), allow(dead_code))]
pub(crate) const SPECS: &[KernelSpec] = &[FORWARD, MSE, BACKWARD, PARAM_GRADS];

/// The buffers the head writes: predictions `y` `(B)`, scratch `dy` `(B)`,
/// the loss `(1)`, the gradients `dh` `(B, H)` and `dp` `(H + 1)`.
pub(crate) struct HeadOut<'a> {
    pub y: &'a wgpu::Buffer,
    pub dy: &'a wgpu::Buffer,
    pub loss: &'a wgpu::Buffer,
    pub dh: &'a wgpu::Buffer,
    pub dp: &'a wgpu::Buffer,
}

/// Records the head on `h` `(B, H)` with parameters `p` `(H + 1)` and
/// targets `goal` `(B)`: forward, loss, and backward.
pub(crate) fn encode_head(
    rec: &mut Recorder,
    [batch, hidden]: [usize; 2],
    h: &wgpu::Buffer,
    p: &wgpu::Buffer,
    goal: &wgpu::Buffer,
    out: &HeadOut,
) -> Result<()> {
    let prm = HeadParams {
        batch: u32_of("batch", batch)?,
        hidden: u32_of("hidden size", hidden)?,
        ..Default::default()
    };
    // One thread sums over H (the prediction) or over the batch (the loss
    // and each parameter's gradient): within the device's loop budget.
    rec.dev.check_loop(
        "the regression head's sums over the batch and the hidden units",
        batch.max(hidden) as u64 + 16,
    )?;
    let bufs = [h, p, goal, out.y, out.dy, out.loss, out.dh, out.dp];
    let groups = |n: usize| -> Result<[u32; 3]> { Ok([u32_of("head", n.div_ceil(64))?, 1, 1]) };
    rec.run(&FORWARD, &prm, &bufs, groups(batch)?)?;
    rec.run(&MSE, &prm, &bufs, [1, 1, 1])?;
    rec.run(&BACKWARD, &prm, &bufs, groups(batch * hidden)?)?;
    rec.run(&PARAM_GRADS, &prm, &bufs, groups(hidden + 1)?)
}
