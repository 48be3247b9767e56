//! The window path of CPU adapters: every matrix product of a layer through
//! `windows.wgsl`, on operands copied into the chunked layout. Its weights'
//! chunked copies live here, made when the parameters are set and again
//! after each update; its buffers are the only ones with window slack and
//! the usage `UNIFORM`.

use crate::config::GruConfig;
use crate::config::ResetForm;
use crate::error::Result;
use crate::gpu::device::Device;
use crate::gpu::gru::products::{GradBufs, Layer, ProductPath};
use crate::gpu::gru::types::LayerTape;
use crate::gpu::ops::common::StepShape;
use crate::gpu::ops::gru_backward::BackwardStepBufs;
use crate::gpu::ops::gru_forward::ForwardStepBufs;
use crate::gpu::ops::windows::{
    encode_backward_steps, encode_backward_steps_rb, encode_chunk, encode_forward_steps,
    encode_forward_steps_rb, encode_windows, window_storage, Chunked, RbWindows, StepWindows,
    Strided, WinOut,
};
use crate::gpu::pool::PooledBuffer;
use crate::gpu::recorder::Recorder;

/// A layer's weights in the chunked layout, derived from the dense ones.
#[derive(Debug)]
struct LayerWindows {
    /// `W_ih` as `(D·3H, I_l)`: the input projections.
    w_ih: PooledBuffer,
    /// `W_ihᵀ` as `(I_l, D·3H)`: the gradient of the input.
    w_ih_t: PooledBuffer,
    /// `W_hh` as `(3H, H)` per direction: the forward recurrent product.
    w_hh: PooledBuffer,
    /// `W_hhᵀ` as `(H, 3H)` per direction: the backward recurrent product
    /// (`(H, 2H)`, the r and z rows, in the reset-before form).
    w_hh_t: PooledBuffer,
}

/// The chunked layouts of a layer's weights (offsets 0; per direction for `W_hh`).
struct WindowLayouts {
    w_ih: Chunked,
    w_ih_t: Chunked,
    w_hh: Chunked,
    w_hh_t: Chunked,
}

fn window_layouts(cfg: &GruConfig, layer: usize) -> WindowLayouts {
    let (nd, h, i_l) = (
        cfg.num_directions(),
        cfg.hidden_size,
        cfg.layer_input_size(layer),
    );
    WindowLayouts {
        w_ih: Chunked::new(nd * 3 * h, i_l, 0),
        w_ih_t: Chunked::new(i_l, nd * 3 * h, 0),
        w_hh: Chunked::new(3 * h, h, 0),
        // The reset-before form's carry takes only the r and z rows of W_hh.
        w_hh_t: match cfg.reset_form {
            ResetForm::After => Chunked::new(h, 3 * h, 0),
            ResetForm::Before => Chunked::new(h, 2 * h, 0),
        },
    }
}

/// The window path, with the chunked weights of every layer.
pub(crate) struct WindowPath {
    layers: Vec<LayerWindows>,
}

impl WindowPath {
    /// Buffers for the chunked weights of every layer of `cfg` (filled by `derive`).
    pub(crate) fn new(dev: &Device, cfg: &GruConfig) -> Result<Self> {
        let nd = cfg.num_directions();
        let layers = (0..cfg.num_layers)
            .map(|l| {
                let lay = window_layouts(cfg, l);
                Ok(LayerWindows {
                    w_ih: window_storage(dev, "weight_ih chunked", lay.w_ih.len())?,
                    w_ih_t: window_storage(dev, "weight_ih transposed, chunked", lay.w_ih_t.len())?,
                    w_hh: window_storage(dev, "weight_hh chunked", nd * lay.w_hh.len())?,
                    w_hh_t: window_storage(
                        dev,
                        "weight_hh transposed, chunked",
                        nd * lay.w_hh_t.len(),
                    )?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(WindowPath { layers })
    }
}

/// The rows of a row-major `(rows, cols)` matrix at `buf[off..]`, as the
/// source of a chunked copy (`transposed`: its columns).
/// `f16`: the matrix is stored as f16 (an f16 model's weights and activations).
fn strided(
    buf: &wgpu::Buffer,
    cols: usize,
    transposed: bool,
    batch: usize,
    f16: bool,
) -> Strided<'_> {
    let (rs, ks) = if transposed { (1, cols) } else { (cols, 1) };
    Strided {
        buf,
        off: 0,
        rs,
        ks,
        batch,
        f16,
    }
}

impl ProductPath for WindowPath {
    fn derive(&self, rec: &mut Recorder, layer: &Layer) -> Result<()> {
        let (nd, h, i_l) = layer.dims();
        let win = &self.layers[layer.l];
        let lay = window_layouts(layer.cfg, layer.l);
        let (w_ih, w_hh) = (layer.p.w_ih.buffer(), layer.p.w_hh.buffer());
        let f16 = layer.f16();
        // W_ih (D·3H, I_l) row-major: element (r, k) at r·I_l + k; its transpose (k, r).
        encode_chunk(
            rec,
            &strided(w_ih, i_l, false, 0, f16),
            win.w_ih.buffer(),
            &lay.w_ih,
            0,
            1,
        )?;
        encode_chunk(
            rec,
            &strided(w_ih, i_l, true, 0, f16),
            win.w_ih_t.buffer(),
            &lay.w_ih_t,
            0,
            1,
        )?;
        // W_hh (D, 3H, H): per direction (r, k) at r·H + k; the transpose (j, k) at k·H + j.
        let hh = 3 * h * h;
        encode_chunk(
            rec,
            &strided(w_hh, h, false, hh, f16),
            win.w_hh.buffer(),
            &lay.w_hh,
            lay.w_hh.len(),
            nd,
        )?;
        encode_chunk(
            rec,
            &strided(w_hh, h, true, hh, f16),
            win.w_hh_t.buffer(),
            &lay.w_hh_t,
            lay.w_hh_t.len(),
            nd,
        )
    }

    fn input_projection(
        &self,
        rec: &mut Recorder,
        layer: &Layer,
        xin: &PooledBuffer,
        gi: &PooledBuffer,
        tb: usize,
    ) -> Result<()> {
        let (nd, h, i_l) = layer.dims();
        let n3 = nd * 3 * h;
        let lx = Chunked::new(tb, i_l, 0);
        let dev = rec.dev;
        let xc = rec.scratch(window_storage(dev, "layer input, chunked", lx.len())?);
        encode_chunk(
            rec,
            &strided(xin.buffer(), i_l, false, 0, layer.f16()),
            xc.buffer(),
            &lx,
            0,
            1,
        )?;
        let lw = window_layouts(layer.cfg, layer.l).w_ih;
        let bias = layer.p.b_ih.as_ref().map(|b| b.buffer());
        let o = WinOut {
            c_off: 0,
            ldc: n3,
            bias_off: bias.map(|_| 0),
        };
        let w = self.layers[layer.l].w_ih.buffer();
        encode_windows(rec, xc.buffer(), &lx, w, &lw, bias, gi.buffer(), &o)?;
        Ok(())
    }

    fn forward_steps(
        &self,
        rec: &mut Recorder,
        layer: &Layer,
        sh: &StepShape,
        bufs: &ForwardStepBufs,
        h0: Option<&wgpu::Buffer>,
    ) -> Result<()> {
        let (nd, h, _) = layer.dims();
        let (batch, dev) = (sh.batch, rec.dev);
        let state = Chunked::new(batch, h, 0);
        let gh = rec.scratch(dev.storage("gh (recurrent products)", nd * batch * 3 * h)?);
        if layer.cfg.reset_form == ResetForm::Before {
            let operand = rec.scratch(window_storage(dev, "h and r·h, chunked", nd * state.len())?);
            let scratch = rec.scratch(dev.storage("r, z and r·h of a step", nd * batch * 3 * h)?);
            let w = RbWindows {
                product: gh.buffer(),
                operand_buf: operand.buffer(),
                operand: state,
                weights_buf: self.layers[layer.l].w_hh.buffer(),
                weights: window_layouts(layer.cfg, layer.l).w_hh,
                scratch: scratch.buffer(),
            };
            encode_forward_steps_rb(rec, sh, bufs, &w)?;
            return Ok(());
        }
        let hwin = rec.scratch(window_storage(dev, "h, chunked", 2 * nd * state.len())?);
        // The steps write only the H columns: the padding must be zero.
        rec.clear(hwin.buffer(), 0, (2 * nd * state.len() * 4) as u64);
        // Parity 0 holds the state before the first step for the first
        // product: h0 as the steps' `hs` holds it in slot 0 (zeros where a
        // reset at step 0 cleared it).
        if h0.is_some() || sh.flags_at.is_some() {
            let slots = if bufs.gates.is_some() {
                sh.t_len + 1
            } else {
                2
            };
            let src = Strided {
                buf: bufs.hs,
                off: 0,
                rs: h,
                ks: 1,
                batch: slots * batch * h,
                f16: layer.f16(),
            };
            encode_chunk(rec, &src, hwin.buffer(), &state, state.len(), nd)?;
        }
        let w = StepWindows {
            product: gh.buffer(),
            state_buf: hwin.buffer(),
            state,
            weights_buf: self.layers[layer.l].w_hh.buffer(),
            weights: window_layouts(layer.cfg, layer.l).w_hh,
        };
        encode_forward_steps(rec, sh, bufs, &w)?;
        Ok(())
    }

    fn backward_steps(
        &self,
        rec: &mut Recorder,
        layer: &Layer,
        sh: &StepShape,
        bufs: &BackwardStepBufs,
    ) -> Result<()> {
        let (nd, h, _) = layer.dims();
        let (batch, dev) = (sh.batch, rec.dev);
        let carry = rec.scratch(dev.storage("carry (recurrent products)", nd * batch * h)?);
        if layer.cfg.reset_form == ResetForm::Before {
            let operand_layout = Chunked::new(batch, 2 * h, 0);
            let operand = rec.scratch(window_storage(
                dev,
                "dG_h (r, z), chunked",
                nd * operand_layout.len(),
            )?);
            let scratch = rec.scratch(dev.storage("d(r·h) r of a step", nd * batch * h)?);
            rec.clear(scratch.buffer(), 0, (nd * batch * h * 4) as u64);
            let w = RbWindows {
                product: carry.buffer(),
                operand_buf: operand.buffer(),
                operand: operand_layout,
                weights_buf: self.layers[layer.l].w_hh_t.buffer(),
                weights: window_layouts(layer.cfg, layer.l).w_hh_t,
                scratch: scratch.buffer(),
            };
            encode_backward_steps_rb(rec, sh, bufs, &w)?;
            return Ok(());
        }
        let state = Chunked::new(batch, 3 * h, 0);
        let gwin = rec.scratch(window_storage(dev, "dG_h, chunked", 2 * nd * state.len())?);
        // The steps write only the 3H columns: the padding must be zero.
        rec.clear(gwin.buffer(), 0, (2 * nd * state.len() * 4) as u64);
        let w = StepWindows {
            product: carry.buffer(),
            state_buf: gwin.buffer(),
            state,
            weights_buf: self.layers[layer.l].w_hh_t.buffer(),
            weights: window_layouts(layer.cfg, layer.l).w_hh_t,
        };
        encode_backward_steps(rec, sh, bufs, &w)?;
        Ok(())
    }

    fn weight_grads(
        &self,
        rec: &mut Recorder,
        layer: &Layer,
        lt: &LayerTape,
        g: &GradBufs,
        t_len: usize,
        batch: usize,
    ) -> Result<()> {
        let (nd, h, i_l) = layer.dims();
        let (tb, h3, dev) = (t_len * batch, 3 * h, rec.dev);
        // The window kernels read both operands with K = T·B contiguous: the
        // transposes, chunked.
        let (lg, lx) = (Chunked::new(nd * h3, tb, 0), Chunked::new(i_l, tb, 0));
        let gt = rec.scratch(window_storage(dev, "dG_i transposed, chunked", lg.len())?);
        let xt = rec.scratch(window_storage(
            dev,
            "layer input transposed, chunked",
            lx.len(),
        )?);
        encode_chunk(
            rec,
            &strided(g.dgi.buffer(), nd * h3, true, 0, false),
            gt.buffer(),
            &lg,
            0,
            1,
        )?;
        encode_chunk(
            rec,
            &strided(lt.xin.buffer(), i_l, true, 0, layer.f16()),
            xt.buffer(),
            &lx,
            0,
            1,
        )?;
        let o = WinOut {
            c_off: 0,
            ldc: i_l,
            bias_off: None,
        };
        encode_windows(
            rec,
            gt.buffer(),
            &lg,
            xt.buffer(),
            &lx,
            None,
            g.dw_ih.buffer(),
            &o,
        )?;
        let (lgh, lh) = (Chunked::new(h3, tb, 0), Chunked::new(h, tb, 0));
        let ght = rec.scratch(window_storage(
            dev,
            "dG_h transposed, chunked",
            nd * lgh.len(),
        )?);
        let ht = rec.scratch(window_storage(
            dev,
            "previous states transposed, chunked",
            nd * lh.len(),
        )?);
        let dgh = strided(g.dgh.buffer(), h3, true, tb * h3, false);
        encode_chunk(rec, &dgh, ght.buffer(), &lgh, lgh.len(), nd)?;
        let hs = strided(
            lt.hs.buffer(),
            h,
            true,
            (t_len + 1) * batch * h,
            layer.f16(),
        );
        encode_chunk(rec, &hs, ht.buffer(), &lh, lh.len(), nd)?;
        let (a, b) = ((ght.buffer(), &lgh), (ht.buffer(), &lh));
        products_per_dir(rec, nd, a, b, (g.dw_hh.buffer(), 0))?;
        if layer.cfg.reset_form == ResetForm::Before {
            rb_dw_hn(rec, layer, lt, g, t_len, batch)?;
        }
        Ok(())
    }

    fn input_grad(
        &self,
        rec: &mut Recorder,
        layer: &Layer,
        dgi: &PooledBuffer,
        dx: &PooledBuffer,
        tb: usize,
    ) -> Result<()> {
        let (nd, h, i_l) = layer.dims();
        let n3 = nd * 3 * h;
        let lg = Chunked::new(tb, n3, 0);
        let dev = rec.dev;
        let gc = rec.scratch(window_storage(dev, "dG_i chunked", lg.len())?);
        encode_chunk(
            rec,
            &strided(dgi.buffer(), n3, false, 0, false),
            gc.buffer(),
            &lg,
            0,
            1,
        )?;
        let lw = window_layouts(layer.cfg, layer.l).w_ih_t;
        let o = WinOut {
            c_off: 0,
            ldc: i_l,
            bias_off: None,
        };
        let w = self.layers[layer.l].w_ih_t.buffer();
        encode_windows(rec, gc.buffer(), &lg, w, &lw, None, dx.buffer(), &o)?;
        Ok(())
    }
}

/// Per direction d, the window product of region d of `a` and of `b` (its
/// H rows) into `dW_hh` `(D, 3H, H)` from row `row0` of direction d's block.
fn products_per_dir(
    rec: &mut Recorder,
    nd: usize,
    (a_buf, la): (&wgpu::Buffer, &Chunked),
    (b_buf, lb): (&wgpu::Buffer, &Chunked),
    (out, row0): (&wgpu::Buffer, usize),
) -> Result<()> {
    let h = lb.rows;
    for d in 0..nd {
        let o = WinOut {
            c_off: d * 3 * h * h + row0 * h,
            ldc: h,
            bias_off: None,
        };
        let (a, b) = (la.at(d * la.len()), lb.at(d * lb.len()));
        encode_windows(rec, a_buf, &a, b_buf, &b, None, out, &o)?;
    }
    Ok(())
}

/// The reset-before form: the n rows of dW_hh are da_nᵀ (r * h), r * h
/// from the tape's fourth gate; they replace those the general product
/// wrote.
fn rb_dw_hn(
    rec: &mut Recorder,
    layer: &Layer,
    lt: &LayerTape,
    g: &GradBufs,
    t_len: usize,
    batch: usize,
) -> Result<()> {
    let (nd, h, _) = layer.dims();
    let (tb, h3, dev) = (t_len * batch, 3 * h, rec.dev);
    let (ln, lrh) = (Chunked::new(h, tb, 0), Chunked::new(h, tb, 0));
    let nt = rec.scratch(window_storage(
        dev,
        "da_n transposed, chunked",
        nd * ln.len(),
    )?);
    let rht = rec.scratch(window_storage(
        dev,
        "r·h transposed, chunked",
        nd * lrh.len(),
    )?);
    let dan = Strided {
        buf: g.dgh.buffer(),
        off: 2 * h,
        rs: 1,
        ks: h3,
        batch: tb * h3,
        f16: false,
    };
    encode_chunk(rec, &dan, nt.buffer(), &ln, ln.len(), nd)?;
    let rh = Strided {
        buf: lt.gates.buffer(),
        off: 3 * h,
        rs: 1,
        ks: 4 * h,
        batch: tb * 4 * h,
        f16: layer.f16(),
    };
    encode_chunk(rec, &rh, rht.buffer(), &lrh, lrh.len(), nd)?;
    let (a, b) = ((nt.buffer(), &ln), (rht.buffer(), &lrh));
    products_per_dir(rec, nd, a, b, (g.dw_hh.buffer(), 2 * h))
}
