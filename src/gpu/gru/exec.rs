//! A call's execution plan: the steps of each layer that `record_forward`
//! and `record_backward` walk in a line, made once per call from the model's
//! configuration, the call's options and its plan. As data, so that what a
//! call records is one list to read (and to test without a device), and a
//! step that applies only to some calls (dropout, the tape, the biases) is
//! decided here, not in the walk.
//!
//! The frame around the layers is the same for every call: the rows sorted
//! into their running order, the first input sequence-first, the layers in
//! [`ExecPlan::layers`]'s order, the results back in the caller's order and
//! layout (`gru/rows.rs`).

use crate::config::GruConfig;
use crate::gpu::plan::Plan;

/// One step of one layer, in the order it is recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LayerStep {
    /// Forward: gi = x W_ihᵀ + b_ih for every step, through the plan's
    /// product family.
    InputProjection,
    /// Forward: the states, slot 0 of each direction from h0 (or zeros),
    /// the rows reset at step 0 zeroed, the step flags after them.
    InitialStates,
    /// Backward: dh's slot of step T from grad_h_n (or zeros).
    StateGrad,
    /// The time loop, as the plan's strategy runs it (the loop's scratch
    /// comes with its encoding).
    TimeLoop,
    /// Forward: the layer's part of h_n. Backward: its part of dL/dh0.
    FinalState,
    /// Backward: dW_ih and dW_hh, through the product family.
    WeightGrads,
    /// Backward: db_ih and db_hh, column sums (with biases only).
    BiasGrads,
    /// Backward: dL/d(the layer's input), through the product family.
    InputGrad,
    /// Dropout between layers (training mode with dropout): the forward's
    /// output of a layer under the top one, the backward's input gradient
    /// of a layer over the first, with the forward's mask.
    Dropout,
    /// Forward: the layer's input, states and gates kept on the tape (the
    /// buffers are the recording's otherwise).
    KeepTape,
}

/// The layers of one call and each one's steps, in the order they run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ExecPlan {
    /// The plan every time loop and product follows.
    pub(crate) plan: Plan,
    /// `(layer, its steps)`: layers 0 up in the forward, the top one down
    /// in the backward.
    pub(crate) layers: Vec<(usize, Vec<LayerStep>)>,
}

impl ExecPlan {
    /// The forward of `cfg` under `plan`: with dropout between layers
    /// (`dropout`: training mode and a configuration with dropout) and the
    /// tape where `keep_tape`.
    pub(crate) fn forward(cfg: &GruConfig, plan: Plan, dropout: bool, keep_tape: bool) -> Self {
        use LayerStep::*;
        let layers = (0..cfg.num_layers)
            .map(|l| {
                let mut steps = vec![InputProjection, InitialStates, TimeLoop, FinalState];
                if dropout && l + 1 < cfg.num_layers {
                    steps.push(Dropout);
                }
                if keep_tape {
                    steps.push(KeepTape);
                }
                (l, steps)
            })
            .collect();
        ExecPlan { plan, layers }
    }

    /// The backward of `cfg` under `plan` (the tape's), for a forward that
    /// had dropout between layers where `dropout`.
    pub(crate) fn backward(cfg: &GruConfig, plan: Plan, dropout: bool) -> Self {
        use LayerStep::*;
        let layers = (0..cfg.num_layers)
            .rev()
            .map(|l| {
                let mut steps = vec![StateGrad, TimeLoop, FinalState, WeightGrads];
                if cfg.bias {
                    steps.push(BiasGrads);
                }
                steps.push(InputGrad);
                if dropout && l > 0 {
                    steps.push(Dropout);
                }
                (l, steps)
            })
            .collect();
        ExecPlan { plan, layers }
    }
}

#[cfg(test)]
mod tests {
    use super::LayerStep::*;
    use super::*;
    use crate::gpu::plan::{Family, Strategy};

    fn cfg(layers: usize, bias: bool) -> GruConfig {
        GruConfig {
            num_layers: layers,
            bias,
            ..GruConfig::new(3, 4)
        }
    }

    const PLAN: Plan = Plan {
        family: Family::Windows,
        strategy: Strategy::Step,
    };

    #[test]
    fn a_forward_runs_its_layers_up_with_dropout_between_them_and_the_tape_where_kept() {
        let e = ExecPlan::forward(&cfg(3, true), PLAN, true, true);
        let order: Vec<usize> = e.layers.iter().map(|(l, _)| *l).collect();
        assert_eq!(order, [0, 1, 2]);
        let core = [InputProjection, InitialStates, TimeLoop, FinalState];
        for (l, steps) in &e.layers {
            assert_eq!(steps[..4], core, "layer {l}");
            let dropout = steps.contains(&Dropout);
            assert_eq!(
                dropout,
                *l < 2,
                "layer {l}: dropout under the top layer only"
            );
            assert_eq!(steps.last(), Some(&KeepTape));
        }
        // Inference: no dropout, no tape.
        let e = ExecPlan::forward(&cfg(2, true), PLAN, false, false);
        assert!(e.layers.iter().all(|(_, s)| s[..] == core));
        assert_eq!(e.plan, PLAN);
    }

    #[test]
    fn a_backward_runs_its_layers_down_biases_and_dropout_only_where_they_are() {
        let e = ExecPlan::backward(&cfg(3, true), PLAN, true);
        let order: Vec<usize> = e.layers.iter().map(|(l, _)| *l).collect();
        assert_eq!(order, [2, 1, 0]);
        for (l, steps) in &e.layers {
            let mut want = vec![StateGrad, TimeLoop, FinalState, WeightGrads, BiasGrads];
            want.push(InputGrad);
            if *l > 0 {
                want.push(Dropout);
            }
            assert_eq!(*steps, want, "layer {l}");
        }
        let e = ExecPlan::backward(&cfg(1, false), PLAN, true);
        assert_eq!(
            e.layers,
            [(
                0,
                vec![StateGrad, TimeLoop, FinalState, WeightGrads, InputGrad]
            )]
        );
    }

    #[test]
    fn every_step_comes_after_the_steps_that_make_its_inputs() {
        // What each step reads, made by an earlier step of its layer.
        let needs = |s: LayerStep| -> &'static [LayerStep] {
            match s {
                TimeLoop => &[InputProjection, InitialStates],
                FinalState | KeepTape => &[InitialStates, TimeLoop],
                Dropout => &[TimeLoop, InputGrad],
                WeightGrads | BiasGrads | InputGrad => &[TimeLoop],
                _ => &[],
            }
        };
        for (fwd, drop, tape, bias) in [(true, true, true, true), (false, true, false, false)] {
            let c = cfg(2, bias);
            let e = match fwd {
                true => ExecPlan::forward(&c, PLAN, drop, tape),
                false => ExecPlan::backward(&c, PLAN, drop),
            };
            for (l, steps) in &e.layers {
                for (i, s) in steps.iter().enumerate() {
                    for n in needs(*s) {
                        let made_here = steps.contains(n);
                        assert!(
                            !made_here || steps[..i].contains(n),
                            "layer {l}: {s:?} before {n:?}"
                        );
                    }
                }
            }
        }
    }
}
