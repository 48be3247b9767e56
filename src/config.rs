//! The configuration of a GRU: everything of PyTorch's `nn.GRU` that bears on the math.

use crate::error::{check_shape, GruError, Result};

/// The hyper-parameters of a GRU, named as in PyTorch's `nn.GRU`.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct GruConfig {
    /// `I`: features of the input.
    pub input_size: usize,
    /// `H`: features of the hidden state.
    pub hidden_size: usize,
    /// `L`: stacked layers.
    pub num_layers: usize,
    /// Which way each layer runs through time: forward (PyTorch's
    /// default), in reverse (ONNX's `direction = "reverse"`, Keras'
    /// `go_backwards`: one direction, from each sequence's last valid step
    /// to its first), or both (PyTorch's `bidirectional = True`, `D = 2`).
    pub direction: Direction,
    /// Input and output are `(B, T, *)` instead of `(T, B, *)`.
    pub batch_first: bool,
    /// The four bias vectors exist when true.
    pub bias: bool,
    /// Dropout probability on the outputs of every layer but the last, in training mode.
    pub dropout: f32,
    /// Where the reset gate acts in the candidate: after the recurrent
    /// product (PyTorch, the default) or before it (ONNX's default, Keras
    /// `reset_after=False`, Cho et al. 2014).
    #[serde(default)]
    pub reset_form: ResetForm,
    /// How the GPU stores the weights and activations (the CPU reference
    /// ignores it): f32 (the default), or f16 with f32 arithmetic.
    #[serde(default)]
    pub precision: Precision,
}

/// The directions of each layer (see [`GruConfig::direction`]).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Direction {
    /// One direction, from the first step to the last (`D = 1`).
    #[default]
    Forward,
    /// One direction, from each sequence's last valid step to its first
    /// (`D = 1`): the reverse half of a bidirectional layer on its own. Its
    /// parameters carry PyTorch's names of that half (`weight_ih_l0_reverse`,
    /// ...), and `h0`, `output` and `h_n` have the shapes of a
    /// unidirectional GRU.
    Reverse,
    /// Both (`D = 2`): the output holds the forward direction's state, then
    /// the reverse direction's, at each step.
    Bidirectional,
}

impl Direction {
    /// `forward`, `reverse` or `bidirectional` (ONNX's names).
    pub fn name(self) -> &'static str {
        match self {
            Direction::Forward => "forward",
            Direction::Reverse => "reverse",
            Direction::Bidirectional => "bidirectional",
        }
    }

    /// The direction a file's metadata gives: its `bidirectional` flag,
    /// and where it has one its `direction` (which must agree with the
    /// flag), or why they do not make one.
    pub fn of_metadata(
        bidirectional: bool,
        direction: Option<&str>,
    ) -> std::result::Result<Self, String> {
        let flag = match bidirectional {
            true => Direction::Bidirectional,
            false => Direction::Forward,
        };
        let Some(name) = direction else {
            return Ok(flag);
        };
        let d = Direction::parse(name.trim()).ok_or_else(|| {
            format!(
                "metadata `direction` is `{}`, expected forward, reverse or bidirectional",
                crate::error::untrusted(name)
            )
        })?;
        if (d == Direction::Bidirectional) != bidirectional {
            return Err(format!(
                "metadata `direction` is {} but `bidirectional` is {bidirectional}",
                d.name()
            ));
        }
        Ok(d)
    }

    /// The direction of this name (ONNX's names).
    pub fn parse(s: &str) -> Option<Self> {
        [
            Direction::Forward,
            Direction::Reverse,
            Direction::Bidirectional,
        ]
        .into_iter()
        .find(|d| d.name() == s)
    }
}

/// The storage precision of a GPU model.
///
/// Under `F16` the weights, the inputs, the states, the outputs and the tape
/// are stored as IEEE half floats in device memory; every product and every
/// sum is computed in f32; gradients are f32, and so are the parameters as
/// the host sees them (an f32 master copy that the optimisers update). It
/// needs the adapter's `SHADER_F16` feature: without it a model is refused
/// with [`GruError::MissingFeature`].
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// 32-bit floats everywhere (the default).
    #[default]
    F32,
    /// 16-bit storage, 32-bit arithmetic.
    F16,
}

impl Precision {
    /// `f32` or `f16`.
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::F16 => "f16",
        }
    }

    /// Bytes of one stored element: 4 or 2.
    pub fn bytes(self) -> usize {
        match self {
            Precision::F32 => 4,
            Precision::F16 => 2,
        }
    }
}

impl std::str::FromStr for Precision {
    type Err = GruError;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "f32" => Ok(Precision::F32),
            "f16" => Ok(Precision::F16),
            _ => Err(GruError::InvalidConfig(format!(
                "precision `{s}`: expected `f32` or `f16`"
            ))),
        }
    }
}

/// The form of the candidate state `n`.
///
/// ```text
/// After:  n = tanh(W_in x + b_in + r * (W_hn h + b_hn))     (PyTorch nn.GRU)
/// Before: n = tanh(W_in x + b_in + W_hn (r * h) + b_hn)     (ONNX linear_before_reset = 0)
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ResetForm {
    /// PyTorch's form: the reset gate scales `W_hn h + b_hn`.
    #[default]
    After,
    /// The reset gate scales `h` before the product with `W_hn`.
    Before,
}

impl ResetForm {
    /// `after` or `before`, as in the metadata key `reset_form`.
    pub fn name(self) -> &'static str {
        match self {
            ResetForm::After => "after",
            ResetForm::Before => "before",
        }
    }

    /// Reads `after` or `before`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "after" => Some(ResetForm::After),
            "before" => Some(ResetForm::Before),
            _ => None,
        }
    }
}

/// Which of the four parameter tensors of a layer-direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ParamKind {
    WeightIh,
    WeightHh,
    BiasIh,
    BiasHh,
}

impl ParamKind {
    /// The four kinds in PyTorch's `state_dict` order.
    pub const ALL: [ParamKind; 4] = [
        ParamKind::WeightIh,
        ParamKind::WeightHh,
        ParamKind::BiasIh,
        ParamKind::BiasHh,
    ];

    fn stem(self) -> &'static str {
        match self {
            ParamKind::WeightIh => "weight_ih",
            ParamKind::WeightHh => "weight_hh",
            ParamKind::BiasIh => "bias_ih",
            ParamKind::BiasHh => "bias_hh",
        }
    }

    /// Whether this kind is a bias vector.
    pub fn is_bias(self) -> bool {
        matches!(self, ParamKind::BiasIh | ParamKind::BiasHh)
    }
}

/// One named parameter: where it lives and what shape it has.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParamSpec {
    /// PyTorch's `state_dict` name, such as `weight_hh_l1_reverse`.
    pub name: String,
    /// Layer index.
    pub layer: usize,
    /// Direction: its index among the layer's directions (`0..D`); it runs
    /// in reverse time where [`GruConfig::runs_reversed`] says so (`_reverse`).
    pub direction: usize,
    pub kind: ParamKind,
    pub shape: Vec<usize>,
}

impl GruConfig {
    /// A one-layer, unidirectional, sequence-first GRU with biases, as `nn.GRU(input_size, hidden_size)`.
    pub fn new(input_size: usize, hidden_size: usize) -> Self {
        GruConfig {
            input_size,
            hidden_size,
            num_layers: 1,
            direction: Direction::Forward,
            batch_first: false,
            bias: true,
            dropout: 0.0,
            reset_form: ResetForm::After,
            precision: Precision::F32,
        }
    }

    /// The GPU's storage precision (see [`Precision`]).
    pub fn precision(mut self, precision: Precision) -> Self {
        self.precision = precision;
        self
    }

    /// The reset-before form of the candidate when true, PyTorch's
    /// reset-after form (the default) when false.
    pub fn reset_before(mut self, yes: bool) -> Self {
        self.reset_form = if yes {
            ResetForm::Before
        } else {
            ResetForm::After
        };
        self
    }

    pub fn layers(mut self, num_layers: usize) -> Self {
        self.num_layers = num_layers;
        self
    }

    /// Both directions when `yes` (PyTorch's `bidirectional`), else forward.
    pub fn bidirectional(mut self, yes: bool) -> Self {
        self.direction = if yes {
            Direction::Bidirectional
        } else {
            Direction::Forward
        };
        self
    }

    /// Which way each layer runs (see [`Direction`]).
    pub fn direction(mut self, direction: Direction) -> Self {
        self.direction = direction;
        self
    }

    /// Whether each layer has both directions (`D = 2`).
    pub fn is_bidirectional(&self) -> bool {
        self.direction == Direction::Bidirectional
    }

    /// Whether direction `index` of a layer (`0..D`) runs in reverse time:
    /// the second of a bidirectional layer, the only one of a reverse layer.
    pub fn runs_reversed(&self, index: usize) -> bool {
        index == 1 || self.direction == Direction::Reverse
    }

    pub fn batch_first(mut self, yes: bool) -> Self {
        self.batch_first = yes;
        self
    }

    pub fn bias(mut self, yes: bool) -> Self {
        self.bias = yes;
        self
    }

    pub fn dropout(mut self, p: f32) -> Self {
        self.dropout = p;
        self
    }

    /// `D`: 2 when bidirectional, else 1.
    pub fn num_directions(&self) -> usize {
        if self.is_bidirectional() {
            2
        } else {
            1
        }
    }

    /// Input features of layer `l`: `I` for the first, `D*H` for the others.
    pub fn layer_input_size(&self, layer: usize) -> usize {
        if layer == 0 {
            self.input_size
        } else {
            self.num_directions() * self.hidden_size
        }
    }

    /// Checks that the configuration describes a GRU: no size is zero, dropout is in [0, 1).
    pub fn validate(&self) -> Result<()> {
        for (name, v) in [
            ("input_size", self.input_size),
            ("hidden_size", self.hidden_size),
            ("num_layers", self.num_layers),
        ] {
            if v == 0 {
                return Err(GruError::InvalidConfig(format!(
                    "{name} is 0; it must be at least 1"
                )));
            }
        }
        // 3H rows must index into u32 arrays on the GPU; keep every count far from overflow.
        let limit = 1usize << 24;
        for (name, v) in [
            ("input_size", self.input_size),
            ("hidden_size", self.hidden_size),
        ] {
            if v > limit {
                return Err(GruError::InvalidConfig(format!(
                    "{name} is {v}; at most {limit} is supported"
                )));
            }
        }
        if self
            .num_layers
            .checked_mul(self.num_directions())
            .is_none_or(|n| n > limit)
        {
            return Err(GruError::InvalidConfig(format!(
                "num_layers is {}; at most {} is supported",
                self.num_layers,
                limit / self.num_directions()
            )));
        }
        self.param_count()?;
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(GruError::InvalidConfig(format!(
                "dropout is {}; it must be in [0, 1)",
                self.dropout
            )));
        }
        Ok(())
    }

    /// The number of parameter values (all tensors together), or an error
    /// where it does not fit in the address space.
    pub fn param_count(&self) -> Result<usize> {
        let h3 = 3usize.checked_mul(self.hidden_size);
        let per_layer = |l: usize| -> Option<usize> {
            let h3 = h3?;
            let w = h3.checked_mul(self.layer_input_size(l).checked_add(self.hidden_size)?)?;
            let b = if self.bias { h3.checked_mul(2)? } else { 0 };
            w.checked_add(b)?.checked_mul(self.num_directions())
        };
        // Layers above the first all have the same size.
        let first = per_layer(0);
        let above = if self.num_layers > 1 {
            per_layer(1).and_then(|p| p.checked_mul(self.num_layers - 1))
        } else {
            Some(0)
        };
        first
            .zip(above)
            .and_then(|(a, b)| a.checked_add(b))
            .ok_or_else(|| {
                GruError::InvalidConfig(format!(
                    "{} layers of hidden size {} and input size {} have more parameters than fit in memory",
                    self.num_layers, self.hidden_size, self.input_size
                ))
            })
    }

    /// PyTorch's `state_dict` name of one parameter of a forward (`0`) or
    /// reverse (`1`) direction.
    pub fn param_name(kind: ParamKind, layer: usize, direction: usize) -> String {
        let suffix = if direction == 1 { "_reverse" } else { "" };
        format!("{}_l{}{}", kind.stem(), layer, suffix)
    }

    /// The name of a parameter of direction `index` (`0..D`) of this
    /// configuration's layers: `_reverse` where it runs in reverse time
    /// (the only direction of a reverse layer too).
    pub fn param_name_of(&self, kind: ParamKind, layer: usize, index: usize) -> String {
        Self::param_name(kind, layer, self.runs_reversed(index) as usize)
    }

    /// The shape of one parameter.
    pub fn param_shape(&self, kind: ParamKind, layer: usize) -> Vec<usize> {
        let h3 = 3 * self.hidden_size;
        match kind {
            ParamKind::WeightIh => vec![h3, self.layer_input_size(layer)],
            ParamKind::WeightHh => vec![h3, self.hidden_size],
            ParamKind::BiasIh | ParamKind::BiasHh => vec![h3],
        }
    }

    /// Every parameter, in PyTorch's `state_dict` order (layer, then direction,
    /// then `weight_ih`, `weight_hh`, `bias_ih`, `bias_hh`).
    pub fn param_specs(&self) -> Vec<ParamSpec> {
        let mut out = Vec::new();
        for layer in 0..self.num_layers {
            for direction in 0..self.num_directions() {
                for kind in ParamKind::ALL {
                    if kind.is_bias() && !self.bias {
                        continue;
                    }
                    out.push(ParamSpec {
                        name: self.param_name_of(kind, layer, direction),
                        layer,
                        direction,
                        kind,
                        shape: self.param_shape(kind, layer),
                    });
                }
            }
        }
        out
    }

    /// The shape of the input for a sequence of `t` steps and a batch of `b`.
    pub fn input_shape(&self, t: usize, b: usize) -> [usize; 3] {
        if self.batch_first {
            [b, t, self.input_size]
        } else {
            [t, b, self.input_size]
        }
    }

    /// The shape of the output for a sequence of `t` steps and a batch of `b`.
    pub fn output_shape(&self, t: usize, b: usize) -> [usize; 3] {
        let c = self.num_directions() * self.hidden_size;
        if self.batch_first {
            [b, t, c]
        } else {
            [t, b, c]
        }
    }

    /// The shape of `h0` and `h_n`: `(L*D, B, H)`.
    pub fn state_shape(&self, b: usize) -> [usize; 3] {
        [self.num_layers * self.num_directions(), b, self.hidden_size]
    }

    /// Reads `(T, B)` from the shape of an input, checking its feature size
    /// and that no size is zero.
    pub fn check_input(&self, name: &str, shape: &[usize]) -> Result<(usize, usize)> {
        let dims: [&'static str; 3] = if self.batch_first {
            ["B", "T", "I"]
        } else {
            ["T", "B", "I"]
        };
        if shape.len() != 3 {
            return Err(GruError::Rank {
                name: name.to_string(),
                expected: format!(
                    "{} with I = {}",
                    if self.batch_first {
                        "(B, T, I)"
                    } else {
                        "(T, B, I)"
                    },
                    self.input_size
                ),
                actual: shape.into(),
            });
        }
        let (t, b) = if self.batch_first {
            (shape[1], shape[0])
        } else {
            (shape[0], shape[1])
        };
        check_shape(name, &self.input_shape(t, b), shape, &dims)?;
        Ok((t, b))
    }

    /// Checks an array that must have the output's shape for `(t, b)`.
    pub fn check_output_like(&self, name: &str, shape: &[usize], t: usize, b: usize) -> Result<()> {
        let dims: [&'static str; 3] = if self.batch_first {
            ["B", "T", "D*H"]
        } else {
            ["T", "B", "D*H"]
        };
        check_shape(name, &self.output_shape(t, b), shape, &dims)
    }

    /// Checks an array that must have the shape of `h0` / `h_n` for a batch of `b`.
    pub fn check_state(&self, name: &str, shape: &[usize], b: usize) -> Result<()> {
        check_shape(name, &self.state_shape(b), shape, &["L*D", "B", "H"])
    }
}
