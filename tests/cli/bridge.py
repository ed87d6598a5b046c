"""Python's side of test_bridge: Debian's python3-torch reads what torchfit exports and writes
what torchfit must read. Run with /usr/bin/python3. Every check raises on failure (exit 1).

  bridge.py write DIR          state_dicts (OrderedDict and plain), bad files, inputs
  bridge.py check DIR          torchfit's exports against Python's own net and reader
  bridge.py dtypes ST PT       a safetensors and a state_dict file of every type (test_bridge writes them)
  bridge.py script DIR         scripted modules (net.pt, two.pt) and ring data (train.csv, in.csv)
  bridge.py check_script DIR   the module torchfit trained and exported (trained.pt) against p.csv
"""
import collections
import csv
import json
import math
import os
import struct
import sys

import numpy as np
import torch


def ring_net():
    """The dnn_binary model's net, as docs/models.md gives it."""
    return torch.nn.Sequential(torch.nn.Linear(2, 4), torch.nn.ReLU(), torch.nn.Linear(4, 8), torch.nn.ReLU(),
                               torch.nn.Linear(8, 1))


# The safetensors format, read from its specification alone (not torchfit's code, not the
# safetensors package): u64 little-endian header size, a JSON header, the raw data.
DTYPES = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "I64": np.int64, "I32": np.int32,
          "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_}


def read_safetensors(path):
    data = open(path, "rb").read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    assert (8 + n) % 8 == 0, "the data should start 8-byte aligned"
    body = data[8 + n:]
    out, spans = {}, []
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, end = info["data_offsets"]
        spans.append((begin, end))
        raw = body[begin:end]
        if info["dtype"] == "BF16":
            # bfloat16: the high half of a float32.
            words = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
            array = words.view(np.float32)
            out[name] = torch.from_numpy(array.copy()).to(torch.bfloat16).reshape(info["shape"])
        else:
            array = np.frombuffer(raw, dtype=np.dtype(DTYPES[info["dtype"]]).newbyteorder("<"))
            out[name] = torch.from_numpy(array.copy()).reshape(info["shape"])
    spans.sort()
    position = 0
    for begin, end in spans:
        assert begin == position, "tensors must cover the data without holes or overlaps"
        position = end
    assert position == len(body), "bytes after the last tensor"
    return out, header.get("__metadata__", {})


def write(folder):
    torch.manual_seed(7)
    net = ring_net()
    torch.save(net.state_dict(), os.path.join(folder, "py_od.pt"))  # an OrderedDict with _metadata
    torch.save(dict(net.state_dict()), os.path.join(folder, "py_plain.pt"))
    torch.save({"epoch": 3, "state_dict": net.state_dict()}, os.path.join(folder, "py_nested.pt"))
    torch.save({**net.state_dict(), "head.weight": torch.ones(2)}, os.path.join(folder, "extra.pt"))
    wide = torch.nn.Sequential(torch.nn.Linear(2, 5), torch.nn.ReLU(), torch.nn.Linear(5, 8), torch.nn.ReLU(),
                               torch.nn.Linear(8, 1))
    torch.save(wide.state_dict(), os.path.join(folder, "wrong_shape.pt"))
    torch.save({"encoder.weight": torch.zeros(3, 3)}, os.path.join(folder, "other_names.pt"))
    net.eval()
    torch.jit.script(net).save(os.path.join(folder, "scripted.pt"))

    class Evil:
        def __reduce__(self):
            return (os.system, ("touch " + os.path.join(folder, "pwned"),))

    torch.save({"0.weight": Evil()}, os.path.join(folder, "evil.pt"))
    with open(os.path.join(folder, "in.csv"), "w") as f:
        f.write("x,y\n")
        g = torch.Generator().manual_seed(3)
        for x, y in (torch.rand(20, 2, generator=g) * 6 - 3).tolist():
            f.write(f"{x:.6f},{y:.6f}\n")


def inputs(folder):
    with open(os.path.join(folder, "in.csv")) as f:
        rows = list(csv.reader(f))[1:]
    return torch.tensor([[float(r[0]), float(r[1])] for r in rows])


def close(a, b, what, tol=1e-6):
    diff = (a.double() - b.double()).abs().max().item()
    assert diff <= tol, f"{what}: differs by {diff}"


def check(folder):
    state = torch.load(os.path.join(folder, "w.state_dict"), weights_only=True)
    assert isinstance(state, collections.OrderedDict), type(state)
    net = ring_net()
    net.load_state_dict(state)  # strict: every name and shape matches torch.nn's
    net.eval()
    safe, metadata = read_safetensors(os.path.join(folder, "w.safetensors"))
    assert metadata.get("format") == "pt" and metadata.get("torchfit_model") == "dnn_binary", metadata
    assert sorted(safe) == sorted(state), (sorted(safe), sorted(state))
    for name in state:
        assert safe[name].dtype == state[name].dtype
        assert torch.equal(safe[name], state[name]), name
    with torch.no_grad():
        expected = torch.sigmoid(net(inputs(folder))).reshape(-1)
    with open(os.path.join(folder, "p.csv")) as f:
        predicted = torch.tensor([float(r["probability"]) for r in csv.DictReader(f)])
    close(predicted, expected, "torchfit predict against Python's net with the exported state_dict")
    with open(os.path.join(folder, "le.txt")) as f:
        plain = torch.tensor([float(v) for v in f.read().split()])
    close(plain, expected, "the LibTorch program's predictions against Python's")
    # A run started from Python's weights (lr ~0: nothing moved) holds exactly those weights.
    started = torch.load(os.path.join(folder, "init.state_dict"), weights_only=True)
    original = torch.load(os.path.join(folder, "py_od.pt"), weights_only=True)
    for name in original:
        close(started[name], original[name], "weights started from py_od.pt: " + name)
    assert not os.path.exists(os.path.join(folder, "pwned")), "the evil pickle ran"
    print("ok")


def dtypes(safetensors_path, state_dict_path):
    # What test_bridge wrote: arange(6) of each type, shape [2, 3].
    types = {"f64": torch.float64, "f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16,
             "i64": torch.int64, "i32": torch.int32, "i16": torch.int16, "i8": torch.int8, "u8": torch.uint8,
             "bool": torch.bool}
    safe, _ = read_safetensors(safetensors_path)
    state = torch.load(state_dict_path, weights_only=True)
    for name, dtype in types.items():
        expected = torch.arange(6).reshape(2, 3).to(dtype)
        for what, got in (("safetensors", safe[name]), ("state_dict", state[name])):
            assert got.dtype == dtype, f"{what} {name}: {got.dtype}"
            assert torch.equal(got, expected), f"{what} {name}: {got}"
    # A non-contiguous tensor was written as its values, not its storage.
    assert torch.equal(state["transposed"], torch.arange(6.0).reshape(2, 3).t())
    assert torch.equal(safe["transposed"], torch.arange(6.0).reshape(2, 3).t())
    print("ok")


class ScriptedNet(torch.nn.Module):
    """A Python-defined net for the torchscript model: its task is an attribute."""

    def __init__(self):
        super().__init__()
        self.task = "binary"
        self.body = torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.ReLU(), torch.nn.BatchNorm1d(16),
                                        torch.nn.Linear(16, 1))

    def forward(self, x):
        return self.body(x)


class TwoInputs(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.task = "binary"
        self.a = torch.nn.Linear(2, 1)

    def forward(self, x, y):
        return self.a(x) + self.a(y)


def script(folder):
    torch.manual_seed(0)
    torch.jit.script(ScriptedNet()).save(os.path.join(folder, "net.pt"))
    torch.jit.script(TwoInputs()).save(os.path.join(folder, "two.pt"))
    g = torch.Generator().manual_seed(1)

    def ring(n, r, label):
        t = torch.rand(n, generator=g) * 2 * math.pi
        rr = r + torch.randn(n, generator=g) * 0.5
        return torch.stack([rr * torch.cos(t), rr * torch.sin(t), torch.full((n,), float(label))], 1)

    data = torch.cat([ring(300, 2, 1), ring(300, 5, 0)])
    data = data[torch.randperm(len(data), generator=g)]
    for name, rows in (("train.csv", data), ("in.csv", data[:20])):
        with open(os.path.join(folder, name), "w") as f:
            f.write("x,y,label\n")
            for a, b, c in rows.tolist():
                f.write(f"{a:.5f},{b:.5f},{int(c)}\n")


def check_script(folder):
    trained = torch.jit.load(os.path.join(folder, "trained.pt"))
    trained.eval()
    initial = torch.jit.load(os.path.join(folder, "net.pt"))
    moved = [n for n, p in trained.named_parameters() if not torch.equal(p, dict(initial.named_parameters())[n])]
    assert moved, "the exported module holds the initial weights, not the trained ones"
    assert sorted(dict(trained.named_buffers())) == sorted(dict(initial.named_buffers()))
    with torch.no_grad():
        expected = torch.sigmoid(trained(inputs(folder))).reshape(-1)
    with open(os.path.join(folder, "p.csv")) as f:
        predicted = torch.tensor([float(r["probability"]) for r in csv.DictReader(f)])
    close(predicted, expected, "torchfit predict against Python's torch.jit.load of the exported module")
    print("ok")


if __name__ == "__main__":
    {"write": write, "check": check, "dtypes": dtypes, "script": script, "check_script": check_script}[sys.argv[1]](
        *sys.argv[2:])
