"""Many tokens per onnxruntime call: a bundle's step graph wrapped in an ONNX ``Loop`` that samples.

At batch 1 a small model's step costs less than the Python around it: one ``session.run`` (its
feeds and outputs turned to and from numpy), then the draw in numpy. ``sampling_loop`` builds from
a step graph a graph whose ``Loop`` runs ``steps`` iterations of: draw the next id of each row from
the last logits, feed it to the step graph, carry its state and logits on (``seqgen.export`` writes
it into the bundle as ``sample_loop.onnx``, after checking it). So a chunk of tokens costs one
call. The draw is ``seqgen.sampling``'s plain temperature draw (in float64, ``exp((z - max z) /
temperature)`` cumulated; the first id whose cumulative mass passes ``u`` times the total, never
past the last id with mass), fed the uniform numbers ``rng.random((steps, B))`` that the Python
loop would draw one step at a time, so the same tokens come out.

Inputs of the wrapped graph: ``logits_in`` (B, V) to draw the first id from, the step graph's
state inputs, ``uniforms`` (steps, B) float64, ``temperature`` float64 () or per row (B, 1),
``bias`` float64 (V,) or per row (B, V) (0, or -inf for ids never drawn). Outputs: the logits
after the last id was fed (B, V), the state outputs, ``tokens`` (steps, B) int64 and ``logprobs``
(steps, B) float64 (the model's own log-softmax at the id drawn, before temperature and bias).

Needs the onnx package (the exporter imports this; the engine only opens the file it wrote).
"""

from __future__ import annotations

import onnx
from onnx import TensorProto, helper

PREFIX = "step/"  # names of the step graph's values inside the loop body


def sampling_loop(step: onnx.ModelProto, state_inputs: list[str], state_outputs: list[str]) -> onnx.ModelProto:
    """The step graph ``step`` (inputs ``ids`` (B, T) and ``state_inputs``, outputs ``logits``
    (B, T, V) and ``state_outputs``) inside a sampling ``Loop``; see the module's docstring."""
    g = step.graph
    # every value of the step graph renamed, so none meets a name of the wrapper; its weights stay in
    # the outer graph, which the loop body reads from
    inner = {n: PREFIX + n for n in _value_names(g) | {i.name for i in g.initializer}}
    weights = []
    for w in g.initializer:
        t = onnx.TensorProto()
        t.CopyFrom(w)
        t.name = inner[w.name]
        weights.append(t)
    body_nodes = []

    def node(op, ins, outs, **attrs):
        body_nodes.append(helper.make_node(op, ins, outs, **attrs))
        return outs[0]

    # the draw, from the carried logits (B, V)
    lg = "b/logits"
    z = node("Cast", [lg], ["b/z"], to=TensorProto.DOUBLE)
    zb = node("Add", [z, "bias"], ["b/zb"])
    opset = next((o.version for o in step.opset_import if o.domain in ("", "ai.onnx")), 17)
    if opset >= 18:  # ReduceMax reads its axes from an input from opset 18 on, from an attribute before
        top = node("ReduceMax", [zb, "b/ax1"], ["b/top"], keepdims=1)
    else:
        top = node("ReduceMax", [zb], ["b/top"], axes=[1], keepdims=1)
    e = node("Exp", [node("Div", [node("Sub", [zb, top], ["b/zc"]), "temperature"], ["b/zt"])], ["b/e"])
    c = node("CumSum", [e, "b/ax1s"], ["b/c"])
    total = node("Gather", [c, "b/last"], ["b/total"], axis=1)  # (B, 1): the cumulated total
    u = node("Unsqueeze", [node("Gather", ["uniforms", "b/iter"], ["b/u0"], axis=0), "b/ax1"], ["b/u"])
    below = node("Cast", [node("LessOrEqual", [c, node("Mul", [u, total], ["b/thr"])], ["b/le"])], ["b/lei"],
                 to=TensorProto.INT64)
    found = node("ReduceSum", [below, "b/ax1"], ["b/found"], keepdims=1)  # (B, 1) searchsorted 'right'
    has = node("Cast", [node("Greater", [e, "b/zero"], ["b/pos"])], ["b/posi"], to=TensorProto.INT64)
    last_mass = node("ArgMax", [has], ["b/lastmass"], axis=1, keepdims=1, select_last_index=1)
    nxt = node("Min", [found, last_mass], ["b/next"])  # (B, 1) int64
    logp = node("GatherElements", [node("LogSoftmax", [z], ["b/ls"], axis=1), nxt], ["b/logp"], axis=1)
    # the step graph, fed the id just drawn
    node("Identity", [nxt], [inner.get("ids", PREFIX + "ids")])
    for name in state_inputs:
        node("Identity", ["b/in/" + name], [inner.get(name, PREFIX + name)])
    for n in g.node:
        m = onnx.NodeProto()
        m.CopyFrom(n)
        m.input[:] = [inner.get(x, x) if x else x for x in n.input]
        m.output[:] = [inner.get(x, x) if x else x for x in n.output]
        if m.name:
            m.name = PREFIX + m.name
        body_nodes.append(m)
    step_logits = inner.get("logits", "logits")
    node("Squeeze", [step_logits, "b/ax1"], ["b/out/logits"])  # (B, 1, V) -> (B, V)
    node("Identity", ["b/cond"], ["b/cond_out"])
    for name, out in zip(state_inputs, state_outputs):
        node("Identity", [inner.get(out, out)], ["b/out/" + name])
    node("Squeeze", [nxt, "b/ax1"], ["b/tok"])
    node("Squeeze", [logp, "b/ax1"], ["b/tokp"])

    consts = [
        helper.make_tensor("b/ax1", TensorProto.INT64, [1], [1]),
        helper.make_tensor("b/ax1s", TensorProto.INT64, [], [1]),
        helper.make_tensor("b/zero", TensorProto.DOUBLE, [], [0.0]),
    ]
    body_nodes[:0] = [helper.make_node("Constant", [], [t.name], value=t) for t in consts]
    body_nodes.insert(0, helper.make_node("Sub", ["vocab", "one"], ["b/last"]))
    f = lambda n, t: helper.make_tensor_value_info(n, t, None)  # noqa: E731
    body = helper.make_graph(
        body_nodes, "sample_step",
        [helper.make_tensor_value_info("b/iter", TensorProto.INT64, []),
         helper.make_tensor_value_info("b/cond", TensorProto.BOOL, []), f(lg, TensorProto.FLOAT)]
        + [f("b/in/" + s, _elem(g, s)) for s in state_inputs],
        [helper.make_tensor_value_info("b/cond_out", TensorProto.BOOL, []), f("b/out/logits", TensorProto.FLOAT)]
        + [f("b/out/" + s, _elem(g, s)) for s in state_inputs]
        + [f("b/tok", TensorProto.INT64), f("b/tokp", TensorProto.DOUBLE)],
        weights,  # inside the body: constants of the subgraph, which onnxruntime can prepack
    )
    outer_nodes = [
        helper.make_node("Shape", ["uniforms"], ["steps"], start=0, end=1),
        helper.make_node("Squeeze", ["steps"], ["trips"]),
        helper.make_node("Shape", ["logits_in"], ["vocab"], start=1, end=2),
        helper.make_node("Loop", ["trips", "", "logits_in"] + list(state_inputs),
                         ["logits"] + list(state_outputs) + ["tokens", "logprobs"], body=body),
    ]
    inputs = [helper.make_tensor_value_info("logits_in", TensorProto.FLOAT, ["batch", "vocab"])]
    inputs += [i for i in g.input if i.name in state_inputs]
    inputs += [helper.make_tensor_value_info("uniforms", TensorProto.DOUBLE, ["steps", "batch"]),
               helper.make_tensor_value_info("temperature", TensorProto.DOUBLE, None),  # () or (B, 1)
               helper.make_tensor_value_info("bias", TensorProto.DOUBLE, None)]  # (V,) or (B, V)
    outputs = [f("logits", TensorProto.FLOAT)] + [f(o, _elem(g, i)) for i, o in zip(state_inputs, state_outputs)]
    outputs += [f("tokens", TensorProto.INT64), f("logprobs", TensorProto.DOUBLE)]
    one = helper.make_tensor("one", TensorProto.INT64, [1], [1])
    graph = helper.make_graph(outer_nodes, "sampling_loop", inputs, outputs, [one])
    model = helper.make_model(graph, opset_imports=list(step.opset_import))
    model.ir_version = step.ir_version
    return model


def _value_names(g: onnx.GraphProto) -> set[str]:
    names = {i.name for i in g.input} | {o.name for o in g.output}
    for n in g.node:
        names.update(x for x in n.input if x)
        names.update(n.output)
    return names


def _elem(g: onnx.GraphProto, name: str) -> int:
    for i in g.input:
        if i.name == name:
            return i.type.tensor_type.elem_type
    return TensorProto.FLOAT
