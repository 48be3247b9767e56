#!/usr/bin/env python3
"""Write the ONNX models of tests/data/onnx-exports/ and their reference outputs.

Run from the repository's root (torch 2.15, onnx 1.23, onnxruntime 1.32,
onnxscript for the default exporter, safetensors, numpy):

    python3 scripts/make_onnx_exports.py            # writes tests/data/onnx-exports/
    python3 scripts/make_onnx_exports.py --out DIR  # anywhere else

Every model is small (I = 3, H = 5, T = 6, B = 4) and made from fixed seeds:

- `torch_*`: `torch.nn.GRU` models exported by `torch.onnx.export`, each with
  the TorchScript exporter (`dynamo=False`, `*_legacy`) and the default one
  (`dynamo=True`, `*_dynamo`), as a user of torch 2.15 would: one layer,
  two layers (with an `h0` input and dynamic sequence and batch sizes),
  two bidirectional layers, `batch_first` with one layer, and
  `batch_first` with two bidirectional layers, `h0` and dynamic sizes. The
  default exporter writes `MODEL.onnx.data` for its larger tensors (here:
  the bidirectional models' weight matrices); an empty `.data` file that no
  tensor names is removed. `torch_l2_ext_dynamo` and
  `torch_l2_bidir_legacy_ext` are exports saved again with every weight and
  bias in external data (`onnx.save_model(..., save_as_external_data=True,
  size_threshold=64)`). The default exporter's node metadata (`namespace`,
  `pkg.torch.onnx.stack_trace`, ...: 28 KB of stack traces with this
  machine's paths in a two-layer model) is removed from every export but
  `torch_l1_dynamo`, which keeps it as the exporter wrote it.
- `hand_*`: graphs written with `onnx.helper`: a stack of three
  bidirectional reset-before layers with `sequence_lens` and `initial_h`
  sliced from one input (`hand_chain3`); a `layout = 1` node
  (`hand_layout1`); weights in a `weights/` subfolder's file
  (`hand_ext_subfolder`); reverse-direction nodes (`direction = "reverse"`,
  as Keras' `go_backwards` and tf2onnx write them): one reset-before node
  (`hand_reverse`) and a stack of two with `sequence_lens`
  (`hand_reverse_stack`); and models to be refused: two GRU nodes in
  parallel (`hand_parallel`), an `Add` between two GRU nodes
  (`hand_add_between`), external data at `../x.bin`
  (`hand_ext_dotdot`), at an absolute path (`hand_ext_absolute`) and at an
  offset past the end of its file (`hand_ext_past_end`).

Beside each model that runs, a reference case: what onnxruntime
(CPUExecutionProvider, float32) computes on fixed random inputs, and for the
torch exports what torch itself computes (float32), in the format
`onnx-model-v1` (the whole model as `import-onnx` imports it; see the
folder's README), or `onnx-gru-v1` for the single `layout = 1` node (its
inputs and outputs in ONNX's batch-first shapes). `gru-wgpu verify` runs both.
"""

import argparse
import os
import warnings

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import TensorProto, helper, numpy_helper
from safetensors.numpy import save_file

I, H, T, B = 3, 5, 6, 4
OPSET = 17


def ort_run(path, feeds):
    """onnxruntime's outputs of the model at `path` (or in these bytes) for `feeds`."""
    so = ort.SessionOptions()
    so.log_severity_level = 3
    s = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    return s.run(None, feeds)


def drop_unused_data(path):
    """Removes `PATH.data` where no tensor of the model names it (the
    default exporter writes one, empty, for small models too)."""
    data = path + ".data"
    if not os.path.exists(data):
        return
    m = onnx.load(path, load_external_data=False)
    used = any(t.data_location == TensorProto.EXTERNAL for t in m.graph.initializer)
    if not used:
        assert os.path.getsize(data) == 0, data
        os.remove(data)


def strip_node_metadata(path):
    """Removes the nodes' `metadata_props` (the default exporter's stack
    traces and scopes; nothing the graph computes depends on them)."""
    m = onnx.load(path, load_external_data=False)
    for n in m.graph.node:
        del n.metadata_props[:]
    onnx.save_model(m, path)


def all_external(path):
    """Saves the model at `path` again with every tensor of 64 bytes or more
    (every weight and bias) in `PATH.data`. (With the small int64 shape
    constants there too, onnxruntime refuses the model: its shape
    inference reads no external data.)"""
    m = onnx.load(path)  # with its external data, if any
    data = path + ".data"
    if os.path.exists(data):
        os.remove(data)  # onnx appends to an existing file
    onnx.save_model(
        m,
        path,
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location=os.path.basename(data),
        size_threshold=64,
    )


def model_case(out, name, made_by, gru_cfg, x, h0, lengths, output, h_n, torch_out=None, torch_h_n=None, direction=None):
    """Writes NAME.safetensors of format onnx-model-v1 beside NAME.onnx."""
    num_layers, bidirectional, batch_first, bias, reset_form = gru_cfg
    meta = {
        "format": "onnx-model-v1",
        "model": name + ".onnx",
        "input_size": str(I),
        "hidden_size": str(H),
        "num_layers": str(num_layers),
        "bidirectional": str(bidirectional).lower(),
        "batch_first": str(batch_first).lower(),
        "bias": str(bias).lower(),
        "reset_form": reset_form,
        "seq_len": str(T),
        "batch": str(B),
        "has_h0": str(h0 is not None).lower(),
        "has_lengths": str(lengths is not None).lower(),
        "reference": f"onnxruntime {ort.__version__} CPUExecutionProvider, float32"
        + ("; torch_output and torch_h_n by torch (float32)" if torch_out is not None else ""),
        "made_by": made_by,
    }
    if direction is not None:
        meta["direction"] = direction
    tensors = {"x": x, "output": output, "h_n": h_n}
    if h0 is not None:
        tensors["h0"] = h0
    if lengths is not None:
        tensors["lengths"] = lengths
    if torch_out is not None:
        tensors["torch_output"] = torch_out
        tensors["torch_h_n"] = torch_h_n
    save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, os.path.join(out, name + ".safetensors"), meta)


class Wrapped(torch.nn.Module):
    """An nn.GRU returning (output, h_n), with or without an h0 argument."""

    def __init__(self, **kw):
        super().__init__()
        self.gru = torch.nn.GRU(I, H, **kw)

    def forward(self, x, h0=None):
        return self.gru(x, h0)


def torch_export(out, name, seed, kw, with_h0, dynamic, dynamo, external=False):
    """One torch export and its reference case."""
    torch.manual_seed(seed)
    m = Wrapped(**kw).eval()
    num_layers = kw.get("num_layers", 1)
    d = 2 if kw.get("bidirectional") else 1
    bf = kw.get("batch_first", False)
    rng = np.random.RandomState(seed)
    x = rng.uniform(-1, 1, (B, T, I) if bf else (T, B, I)).astype(np.float32)
    h0 = rng.uniform(-1, 1, (num_layers * d, B, H)).astype(np.float32) if with_h0 else None
    args = (torch.from_numpy(x),) + ((torch.from_numpy(h0),) if with_h0 else ())
    names = ["x"] + (["h0"] if with_h0 else [])
    path = os.path.join(out, name + ".onnx")
    for p in (path, path + ".data"):
        if os.path.exists(p):
            os.remove(p)
    extra = {}
    if dynamic:
        if dynamo:
            t_dim, b_dim = torch.export.Dim("T", min=2), torch.export.Dim("B", min=2)
            shapes = {"x": {1: t_dim, 0: b_dim} if bf else {0: t_dim, 1: b_dim}}
            if with_h0:
                shapes["h0"] = {1: b_dim}
            extra["dynamic_shapes"] = shapes
        else:
            axes = {"x": {0: "B", 1: "T"} if bf else {0: "T", 1: "B"}}
            if with_h0:
                axes["h0"] = {1: "B"}
            extra["dynamic_axes"] = axes
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(m, args, path, dynamo=dynamo, input_names=names, output_names=["output", "h_n"], **extra)
    drop_unused_data(path)
    if dynamo and name != "torch_l1_dynamo":
        strip_node_metadata(path)
    if external:
        all_external(path)
    with torch.no_grad():
        t_out, t_h_n = m(*args)
    feeds = {"x": x}
    if with_h0:
        feeds["h0"] = h0
    output, h_n = ort_run(path, feeds)
    how = "dynamo=True (the default exporter)" if dynamo else "dynamo=False (the TorchScript exporter)"
    made_by = f"torch {torch.__version__} torch.onnx.export({how}) of nn.GRU({I}, {H}, {kw}), seed {seed}"
    if dynamic:
        made_by += ", dynamic sequence and batch sizes"
    if external:
        made_by += f"; saved again by onnx {onnx.__version__} with every weight and bias in {name}.onnx.data"
    cfg = (num_layers, d == 2, bf, True, "after")
    model_case(out, name, made_by, cfg, x, h0, None, output, h_n, t_out.numpy(), t_h_n.numpy())


def rand(rng, *shape):
    return rng.uniform(-0.5, 0.5, shape).astype(np.float32)


def gru_weights(rng, prefix, d, i):
    """W, R, B initializers of one GRU node."""
    return [
        numpy_helper.from_array(rand(rng, d, 3 * H, i), prefix + "W"),
        numpy_helper.from_array(rand(rng, d, 3 * H, H), prefix + "R"),
        numpy_helper.from_array(rand(rng, d, 6 * H), prefix + "B"),
    ]


def ints(name, values):
    return numpy_helper.from_array(np.array(values, dtype=np.int64), name)


def save(out, name, graph):
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="onnx.helper (by hand)")
    m.ir_version = 8
    onnx.checker.check_model(m)
    path = os.path.join(out, name + ".onnx")
    onnx.save_model(m, path)
    return path


def hand_made_by(what):
    return f"onnx {onnx.__version__} onnx.helper by hand: {what}"


def hand_chain3(out):
    """Three bidirectional reset-before layers, joined as the exporters join
    them (Transpose (0, 2, 1, 3), Reshape to [0, 0, -1]), each with
    `sequence_lens` and rows 2l..2l+2 of the input `h0` as `initial_h`."""
    rng = np.random.RandomState(31)
    d, layers = 2, 3
    nodes, inits = [], [ints("flat", [0, 0, -1]), ints("axis0", [0])]
    x = "x"
    for l in range(layers):
        inits += gru_weights(rng, f"l{l}_", d, I if l == 0 else d * H)
        inits += [ints(f"h_start{l}", [d * l]), ints(f"h_end{l}", [d * (l + 1)])]
        nodes.append(helper.make_node("Slice", ["h0", f"h_start{l}", f"h_end{l}", "axis0"], [f"h0_{l}"], name=f"slice{l}"))
        nodes.append(
            helper.make_node(
                "GRU",
                [x, f"l{l}_W", f"l{l}_R", f"l{l}_B", "lens", f"h0_{l}"],
                [f"Y{l}", f"Yh{l}"],
                name=f"gru{l}",
                hidden_size=H,
                direction="bidirectional",
                linear_before_reset=0,
            )
        )
        nodes.append(helper.make_node("Transpose", [f"Y{l}"], [f"Yt{l}"], name=f"transpose{l}", perm=[0, 2, 1, 3]))
        x = f"X{l + 1}" if l + 1 < layers else "output"
        nodes.append(helper.make_node("Reshape", [f"Yt{l}", "flat"], [x], name=f"reshape{l}"))
    nodes.append(helper.make_node("Concat", [f"Yh{l}" for l in range(layers)], ["h_n"], name="concat", axis=0))
    graph = helper.make_graph(
        nodes,
        "hand_chain3",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["T", "B", I]),
            helper.make_tensor_value_info("h0", TensorProto.FLOAT, [layers * d, "B", H]),
            helper.make_tensor_value_info("lens", TensorProto.INT32, ["B"]),
        ],
        [
            helper.make_tensor_value_info("output", TensorProto.FLOAT, ["T", "B", d * H]),
            helper.make_tensor_value_info("h_n", TensorProto.FLOAT, [layers * d, "B", H]),
        ],
        inits,
    )
    path = save(out, "hand_chain3", graph)
    xv = rand(rng, T, B, I) * 2
    h0 = rand(rng, layers * d, B, H) * 2
    lens = np.array([6, 2, 5, 1], dtype=np.int32)
    output, h_n = ort_run(path, {"x": xv, "h0": h0, "lens": lens})
    made_by = hand_made_by("3 bidirectional GRU nodes, linear_before_reset = 0, sequence_lens, initial_h sliced from h0")
    model_case(out, "hand_chain3", made_by, (layers, True, False, True, "before"), xv, h0, lens, output, h_n)


def hand_reverse(out, name, layers, lbr, with_lens):
    """`layers` reverse-direction GRU nodes (ONNX's `direction = "reverse"`,
    as Keras' `go_backwards` and tf2onnx write them), joined by Squeeze of
    axis 1, `initial_h` sliced from one input, `sequence_lens` where asked."""
    rng = np.random.RandomState(41 + layers + 2 * lbr)
    nodes, inits = [], [ints("axis0", [0]), ints("axis1", [1])]
    x = "x"
    for l in range(layers):
        inits += gru_weights(rng, f"l{l}_", 1, I if l == 0 else H)
        inits += [ints(f"h_start{l}", [l]), ints(f"h_end{l}", [l + 1])]
        nodes.append(helper.make_node("Slice", ["h0", f"h_start{l}", f"h_end{l}", "axis0"], [f"h0_{l}"], name=f"slice{l}"))
        nodes.append(
            helper.make_node(
                "GRU",
                [x, f"l{l}_W", f"l{l}_R", f"l{l}_B", "lens" if with_lens else "", f"h0_{l}"],
                [f"Y{l}", f"Yh{l}"],
                name=f"gru{l}",
                hidden_size=H,
                direction="reverse",
                linear_before_reset=lbr,
            )
        )
        x = f"X{l + 1}" if l + 1 < layers else "output"
        nodes.append(helper.make_node("Squeeze", [f"Y{l}", "axis1"], [x], name=f"squeeze{l}"))
    nodes.append(helper.make_node("Concat", [f"Yh{l}" for l in range(layers)], ["h_n"], name="concat", axis=0))
    inputs = [
        helper.make_tensor_value_info("x", TensorProto.FLOAT, ["T", "B", I]),
        helper.make_tensor_value_info("h0", TensorProto.FLOAT, [layers, "B", H]),
    ]
    if with_lens:
        inputs.append(helper.make_tensor_value_info("lens", TensorProto.INT32, ["B"]))
    graph = helper.make_graph(
        nodes,
        name,
        inputs,
        [
            helper.make_tensor_value_info("output", TensorProto.FLOAT, ["T", "B", H]),
            helper.make_tensor_value_info("h_n", TensorProto.FLOAT, [layers, "B", H]),
        ],
        inits,
    )
    path = save(out, name, graph)
    xv = rand(rng, T, B, I) * 2
    h0 = rand(rng, layers, B, H) * 2
    feeds = {"x": xv, "h0": h0}
    lens = None
    if with_lens:
        lens = np.array([6, 2, 5, 1], dtype=np.int32)
        feeds["lens"] = lens
    output, h_n = ort_run(path, feeds)
    made_by = hand_made_by(
        f"{layers} reverse GRU node(s), linear_before_reset = {lbr}, initial_h sliced from h0"
        + (", sequence_lens" if with_lens else "")
    )
    form = "after" if lbr else "before"
    model_case(out, name, made_by, (layers, False, False, True, form), xv, h0, lens, output, h_n, direction="reverse")


def hand_ext_subfolder(out):
    """One forward node whose W, R and B are in `weights/hand_ext_subfolder.bin`, at offsets."""
    rng = np.random.RandomState(37)
    w, r, b = (rand(rng, 1, 3 * H, I), rand(rng, 1, 3 * H, H), rand(rng, 1, 6 * H))
    os.makedirs(os.path.join(out, "weights"), exist_ok=True)
    blob, tensors = b"", []
    for name, a in (("W", w), ("R", r), ("B", b)):
        t = numpy_helper.from_array(a, name)
        raw = t.raw_data
        t.ClearField("raw_data")
        t.data_location = TensorProto.EXTERNAL
        for k, v in (("location", "weights/hand_ext_subfolder.bin"), ("offset", str(len(blob))), ("length", str(len(raw)))):
            e = t.external_data.add()
            e.key, e.value = k, v
        blob += raw + b"\0" * 12  # offsets that are not back to back
        tensors.append(t)
    with open(os.path.join(out, "weights", "hand_ext_subfolder.bin"), "wb") as f:
        f.write(blob)
    node = helper.make_node("GRU", ["x", "W", "R", "B"], ["Y", "h_n"], name="gru", hidden_size=H, linear_before_reset=1)
    squeeze = helper.make_node("Squeeze", ["Y", "axis1"], ["output"], name="squeeze")
    graph = helper.make_graph(
        [node, squeeze],
        "hand_ext_subfolder",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["T", "B", I])],
        [
            helper.make_tensor_value_info("output", TensorProto.FLOAT, ["T", "B", H]),
            helper.make_tensor_value_info("h_n", TensorProto.FLOAT, [1, "B", H]),
        ],
        tensors + [ints("axis1", [1])],
    )
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="onnx.helper (by hand)")
    m.ir_version = 8
    path = os.path.join(out, "hand_ext_subfolder.onnx")
    with open(path, "wb") as f:
        f.write(m.SerializeToString())
    onnx.checker.check_model(path)
    xv = rand(rng, T, B, I) * 2
    output, h_n = ort_run(path, {"x": xv})
    made_by = hand_made_by("one GRU node, W, R and B in weights/hand_ext_subfolder.bin at offsets 0, 192, 504")
    model_case(out, "hand_ext_subfolder", made_by, (1, False, False, True, "after"), xv, None, None, output, h_n)


def hand_layout1(out):
    """A `layout = 1` node: X (B, T, I), initial_h (B, D, H), Y (B, T, D, H), Y_h (B, D, H)."""
    rng = np.random.RandomState(41)
    d = 2
    inits = gru_weights(rng, "", d, I)
    node = helper.make_node(
        "GRU",
        ["X", "W", "R", "B", "sequence_lens", "initial_h"],
        ["Y", "Y_h"],
        name="gru_layout1",
        hidden_size=H,
        direction="bidirectional",
        linear_before_reset=1,
        layout=1,
    )
    graph = helper.make_graph(
        [node],
        "hand_layout1",
        [
            helper.make_tensor_value_info("X", TensorProto.FLOAT, ["B", "T", I]),
            helper.make_tensor_value_info("sequence_lens", TensorProto.INT32, ["B"]),
            helper.make_tensor_value_info("initial_h", TensorProto.FLOAT, ["B", d, H]),
        ],
        [
            helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["B", "T", d, H]),
            helper.make_tensor_value_info("Y_h", TensorProto.FLOAT, ["B", d, H]),
        ],
        inits,
    )
    path = save(out, "hand_layout1", graph)
    xv = rand(rng, B, T, I) * 2
    h0 = rand(rng, B, d, H) * 2
    lens = np.array([3, 6, 1, 4], dtype=np.int32)
    # onnxruntime 1.32 refuses layout = 1 ("Batchwise recurrent operations
    # (layout == 1) are not supported"): it runs the same node with layout 0
    # on the inputs transposed to (T, B, I) and (D, B, H), and its outputs
    # are transposed to layout 1's (B, T, D, H) and (B, D, H), as the
    # operator's definition of layout 1 says.
    seq_first = onnx.load(path)
    for a in seq_first.graph.node[0].attribute:
        if a.name == "layout":
            a.i = 0
    for v in list(seq_first.graph.input) + list(seq_first.graph.output):
        v.type.tensor_type.ClearField("shape")  # the declared shapes are layout 1's

    def layout0(lengths):
        y0, y_h0 = ort_run(
            seq_first.SerializeToString(),
            {"X": xv.transpose(1, 0, 2).copy(), "sequence_lens": lengths, "initial_h": h0.transpose(1, 0, 2).copy()},
        )
        return y0.transpose(2, 0, 1, 3), y_h0.transpose(1, 0, 2)

    y, y_h = layout0(lens)
    # onnx's own reference evaluator runs layout 1 as it is (it ignores
    # sequence_lens, so the check is on full lengths): the same within float32's rounding.
    from onnx.reference import ReferenceEvaluator

    full = np.full(B, T, dtype=np.int32)
    ry, ry_h = ReferenceEvaluator(path).run(None, {"X": xv, "sequence_lens": full, "initial_h": h0})
    fy, fy_h = layout0(full)
    assert np.abs(ry - fy).max() < 1e-6 and np.abs(ry_h - fy_h).max() < 1e-6, (np.abs(ry - fy).max(), np.abs(ry_h - fy_h).max())
    assert y.shape == (B, T, d, H) and y_h.shape == (B, d, H)
    meta = {
        "format": "onnx-gru-v1",
        "hidden_size": str(H),
        "input_size": str(I),
        "direction": "bidirectional",
        "linear_before_reset": "1",
        "layout": "1",
        "seq_len": str(T),
        "batch": str(B),
        "model": "hand_layout1.onnx",
        "reference": f"onnxruntime {ort.__version__} CPUExecutionProvider, float32, on the node with layout 0 and the "
        "inputs and outputs transposed (onnxruntime refuses layout 1); onnx.reference (layout 1 itself) agrees within 1e-6 on full lengths; "
        + hand_made_by("one layout = 1 node"),
    }
    w, r, b = (numpy_helper.to_array(t) for t in inits)
    tensors = {"X": xv, "W": w, "R": r, "B": b, "sequence_lens": lens, "initial_h": h0, "Y": y, "Y_h": y_h}
    save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, os.path.join(out, "hand_layout1.safetensors"), meta)


def two_nodes(out, name, between):
    """Two forward GRU nodes that are not a stack: both reading `x`
    (`between` None), or the second reading the first's squeezed Y through
    an `Add` of a constant."""
    rng = np.random.RandomState(43)
    inits = gru_weights(rng, "a_", 1, I) + [ints("axis1", [1])]
    nodes = [helper.make_node("GRU", ["x", "a_W", "a_R", "a_B"], ["Ya", "ha"], name="gru_a", hidden_size=H, linear_before_reset=1)]
    outputs = [helper.make_tensor_value_info("ha", TensorProto.FLOAT, [1, "B", H])]
    if between is None:
        inits += gru_weights(rng, "b_", 1, I)
        b_input = "x"
    else:
        inits += gru_weights(rng, "b_", 1, H) + [numpy_helper.from_array(rand(rng, H), "shift")]
        nodes.append(helper.make_node("Squeeze", ["Ya", "axis1"], ["Ya3"], name="squeeze_a"))
        nodes.append(helper.make_node(between, ["Ya3", "shift"], ["Xb"], name="between"))
        b_input = "Xb"
    nodes.append(helper.make_node("GRU", [b_input, "b_W", "b_R", "b_B"], ["Yb", "hb"], name="gru_b", hidden_size=H, linear_before_reset=1))
    outputs.append(helper.make_tensor_value_info("hb", TensorProto.FLOAT, [1, "B", H]))
    graph = helper.make_graph(nodes, name, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["T", "B", I])], outputs, inits)
    save(out, name, graph)


def bad_external(out, name, location, offset):
    """One forward node whose W is external data at `location` (and `offset`)."""
    rng = np.random.RandomState(47)
    w, r, b = gru_weights(rng, "", 1, I)
    raw = w.raw_data
    w.ClearField("raw_data")
    w.data_location = TensorProto.EXTERNAL
    for k, v in (("location", location), ("offset", str(offset)), ("length", str(len(raw)))):
        e = w.external_data.add()
        e.key, e.value = k, v
    node = helper.make_node("GRU", ["x", "W", "R", "B"], ["Y", "h_n"], name="gru", hidden_size=H, linear_before_reset=1)
    graph = helper.make_graph(
        [node],
        name,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["T", "B", I])],
        [helper.make_tensor_value_info("h_n", TensorProto.FLOAT, [1, "B", H])],
        [w, r, b],
    )
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="onnx.helper (by hand)")
    m.ir_version = 8
    with open(os.path.join(out, name + ".onnx"), "wb") as f:
        f.write(m.SerializeToString())
    return raw


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="tests/data/onnx-exports")
    ap.add_argument("--only-reverse", action="store_true", help="write only the reverse-direction models")
    args = ap.parse_args()
    out = args.out
    os.makedirs(out, exist_ok=True)
    reverse = [("hand_reverse", 1, 0, False), ("hand_reverse_stack", 2, 1, True)]
    for name, layers, lbr, lens in reverse:
        hand_reverse(out, name, layers, lbr, lens)
    if args.only_reverse:
        print("wrote the reverse-direction models")
        return
    exports = [
        # name, seed, nn.GRU arguments, h0 input, dynamic sizes
        ("torch_l1", 1, {}, False, False),
        ("torch_l2", 2, {"num_layers": 2}, True, True),
        ("torch_l2_bidir", 3, {"num_layers": 2, "bidirectional": True}, False, False),
        ("torch_bf", 4, {"batch_first": True}, False, False),
        ("torch_bf_stack", 5, {"num_layers": 2, "bidirectional": True, "batch_first": True}, True, True),
    ]
    for name, seed, kw, h0, dynamic in exports:
        for dynamo in (False, True):
            full = f"{name}_{'dynamo' if dynamo else 'legacy'}"
            torch_export(out, full, seed, kw, h0, dynamic, dynamo)
            print("wrote", full)
    torch_export(out, "torch_l2_ext_dynamo", 6, {"num_layers": 2}, True, False, True, external=True)
    torch_export(out, "torch_l2_bidir_legacy_ext", 7, {"num_layers": 2, "bidirectional": True}, False, False, False, external=True)
    hand_chain3(out)
    hand_ext_subfolder(out)
    hand_layout1(out)
    two_nodes(out, "hand_parallel", None)
    two_nodes(out, "hand_add_between", "Add")
    bad_external(out, "hand_ext_dotdot", "../x.bin", 0)
    bad_external(out, "hand_ext_absolute", "/etc/passwd", 0)
    raw = bad_external(out, "hand_ext_past_end", "hand_ext_past_end.onnx.data", 1 << 40)
    with open(os.path.join(out, "hand_ext_past_end.onnx.data"), "wb") as f:
        f.write(raw)  # the right bytes, at offset 0: the model's offset is 2^40
    print("wrote the hand-made models")


if __name__ == "__main__":
    main()
