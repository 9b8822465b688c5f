#!/usr/bin/env python3
"""Writes the PyTorch checkpoint fixtures of @xlt/core's torch reader tests (stdlib only, no torch).

The files have torch.save's zip layout (`<prefix>/data.pkl`, `<prefix>/byteorder`, `<prefix>/data/<key>`,
`<prefix>/version`), entries stored uncompressed, and a protocol-2 pickle whose opcodes are the ones torch
writes: stand-ins for `torch._utils._rebuild_tensor_v2`, `torch.FloatStorage` etc. are registered under
the module names `torch._utils` / `torch`, so the GLOBAL opcodes read exactly `torch._utils
_rebuild_tensor_v2` and `torch FloatStorage`, and the persistent ids are torch's
`('storage', storage_type, key, location, numel)`.

Run from anywhere: `python3 packages/core/test-fixtures/make_torch_fixtures.py`. The output is
deterministic (fixed zip timestamps), so rerunning it leaves the committed files unchanged.
"""

import collections
import io
import os
import pickle
import struct
import sys
import types
import zipfile

OUT = os.path.dirname(os.path.abspath(__file__))

# --- stand-ins for the torch objects a state dict pickle refers to ------------------------------

torch = types.ModuleType('torch')
torch_utils = types.ModuleType('torch._utils')
torch._utils = torch_utils
sys.modules['torch'] = torch
sys.modules['torch._utils'] = torch_utils


def _fake(module, name):
    def fn(*args):
        raise RuntimeError('stand-in only')

    fn.__module__ = module.__name__
    fn.__qualname__ = name
    fn.__name__ = name
    setattr(module, name, fn)
    return fn


_rebuild_tensor_v2 = _fake(torch_utils, '_rebuild_tensor_v2')
_rebuild_parameter = _fake(torch_utils, '_rebuild_parameter')

# dtype -> (storage class name, struct format)
STORAGES = {
    'F32': ('FloatStorage', 'f'),
    'F64': ('DoubleStorage', 'd'),
    'F16': ('HalfStorage', 'e'),
    'BF16': ('BFloat16Storage', 'H'),  # values given as raw bfloat16 words
    'I64': ('LongStorage', 'q'),
    'I32': ('IntStorage', 'i'),
    'I16': ('ShortStorage', 'h'),
    'I8': ('CharStorage', 'b'),
    'U8': ('ByteStorage', 'B'),
    'BOOL': ('BoolStorage', '?'),
}
for _cls_name, _ in STORAGES.values():
    _cls = type(_cls_name, (), {})
    _cls.__module__ = 'torch'
    _cls.__qualname__ = _cls_name
    setattr(torch, _cls_name, _cls)


class Storage:
    def __init__(self, dtype, values):
        self.dtype = dtype
        self.values = list(values)

    def to_bytes(self):
        fmt = STORAGES[self.dtype][1]
        return struct.pack('<' + fmt * len(self.values), *self.values)


class Tensor:
    """Pickles as torch.Tensor does: _rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks)."""

    def __init__(self, storage, offset, size, stride=None, metadata=None):
        if stride is None:
            stride, acc = [], 1
            for d in reversed(size):
                stride.insert(0, acc)
                acc *= d
        self.args = (storage, offset, tuple(size), tuple(stride), False, collections.OrderedDict())
        if metadata:
            self.args = self.args + (metadata,)

    def __reduce_ex__(self, proto):
        return (_rebuild_tensor_v2, self.args)


class Parameter:
    """Pickles as torch.nn.Parameter does: _rebuild_parameter(data, requires_grad, hooks)."""

    def __init__(self, tensor):
        self.tensor = tensor

    def __reduce_ex__(self, proto):
        return (_rebuild_parameter, (self.tensor, True, collections.OrderedDict()))


def contiguous(dtype, values, shape):
    return Tensor(Storage(dtype, values), 0, shape)


def torch_pickle(obj, protocol=2):
    """Pickles `obj` as torch.save does; returns (pickle bytes, {key: storage bytes})."""
    keys = {}
    storages = {}

    class TorchPickler(pickle.Pickler):
        def persistent_id(self, o):
            if isinstance(o, Storage):
                key = keys.setdefault(id(o), str(len(keys)))
                storages[key] = o
                storage_type = getattr(torch, STORAGES[o.dtype][0])
                return ('storage', storage_type, key, 'cpu', len(o.values))
            return None

    buf = io.BytesIO()
    TorchPickler(buf, protocol=protocol).dump(obj)
    return buf.getvalue(), {k: s.to_bytes() for k, s in storages.items()}


def write_zip(name, pkl, storages, prefix='archive', byteorder='little', compress=(), zip64=False):
    """torch's record order: data.pkl, byteorder, data/<key> (sorted), version, .data/serialization_id."""
    path = os.path.join(OUT, name)
    records = [('data.pkl', pkl)]
    if byteorder is not None:
        records.append(('byteorder', byteorder.encode()))
    records += [(f'data/{k}', storages[k]) for k in sorted(storages)]
    records += [('version', b'3\n'), ('.data/serialization_id', b'0123456789012345678901234567890123456789')]
    with zipfile.ZipFile(path, 'w', zipfile.ZIP_STORED) as z:
        for rec, data in records:
            zi = zipfile.ZipInfo(f'{prefix}/{rec}', date_time=(1980, 1, 1, 0, 0, 0))
            zi.compress_type = zipfile.ZIP_DEFLATED if rec in compress else zipfile.ZIP_STORED
            zi.create_system = 0
            with z.open(zi, 'w', force_zip64=zip64) as f:
                f.write(data)
    return path


def state_dict(items):
    """An OrderedDict with `_metadata`, as nn.Module.state_dict() returns (pickled with a BUILD)."""
    sd = collections.OrderedDict(items)
    sd._metadata = collections.OrderedDict([('', {'version': 1})])
    return sd


# --- basic.bin: every storage type, tied storage with offsets, non-contiguous views, a scalar ---

tied = Storage('F32', [float(i) for i in range(12)])
grid = Storage('F32', [0.0, 1.0, 2.0, 3.0, 4.0, 5.0])  # a [2, 3] matrix
cube = Storage('F32', [float(i) for i in range(24)])  # a [2, 3, 4] array
basic = state_dict(
    [
        ('f32', contiguous('F32', [0.5, -1.25, 2.0, 3.75, 100.5, -7.0], [2, 3])),
        ('i64', contiguous('I64', [0, -1, 2**40 + 3, -(2**62)], [4])),
        ('tied.a', Tensor(tied, 0, [3, 4])),
        ('tied.b', Tensor(tied, 4, [2, 4])),
        ('scalar', Tensor(tied, 7, [], [])),
        ('transposed', Tensor(grid, 0, [3, 2], [1, 3])),
        ('column', Tensor(grid, 1, [2], [3])),
        ('expanded', Tensor(grid, 0, [2, 3], [0, 1])),
        ('f16', contiguous('F16', [1.0, -2.5, 65504.0], [3])),
        ('bf16', contiguous('BF16', [0x3F80, 0xC020, 0x4049, 0x0000], [2, 2])),
        ('f64', contiguous('F64', [1 / 3, -1e300], [2])),
        ('i32', contiguous('I32', [-5, 2**31 - 1], [2])),
        ('i16', contiguous('I16', [-300, 32767], [2])),
        ('i8', contiguous('I8', [-128, 127], [2])),
        ('u8', contiguous('U8', [0, 255], [2])),
        ('bool', contiguous('BOOL', [True, False, True], [3])),
        ('empty', contiguous('F32', [], [0, 4])),
        ('permuted', Tensor(cube, 0, [4, 2, 3], [1, 12, 4])),  # cube.permute(2, 0, 1)
    ]
)
basic_pkl, basic_storages = torch_pickle(basic)
write_zip('basic.bin', basic_pkl, basic_storages)
# the same with one storage deflated (torch never writes that)
write_zip('compressed.bin', basic_pkl, basic_storages, compress=('data/0',))
# a big-endian byte order record
write_zip('bigendian.bin', basic_pkl, basic_storages, byteorder='big')

# --- nested.bin: a training checkpoint {'state_dict': {...}, 'epoch': 3, ...}, another top folder ---

nested = {
    'state_dict': {
        'encoder.weight': contiguous('F32', [1.0, 2.0, 3.0, 4.0], [2, 2]),
        'encoder.bias': contiguous('F32', [-1.0, 1.0], [2]),
    },
    'epoch': 3,
    'optimizer': {'lr': 0.001, 'betas': (0.9, 0.999), 'nesterov': False, 'name': None},
}
write_zip('nested.bin', *torch_pickle(nested), prefix='pytorch_model')

# --- proto4.bin: protocol 4 opcodes (FRAME, SHORT_BINUNICODE, MEMOIZE, STACK_GLOBAL), parameters ---

p_store = Storage('F32', [1.5, 2.5, 3.5])
proto4 = collections.OrderedDict(
    [
        ('weight', Parameter(Tensor(p_store, 0, [3]))),
        ('tail', Tensor(p_store, 1, [2], metadata={'note': 1})),
        ('ids', contiguous('I64', [2**53 + 1, 7], [2])),
    ]
)
write_zip('proto4.bin', *torch_pickle(proto4, protocol=4), prefix='some.model-name')

# --- legacy.bin: TF-era LayerNorm names (gamma/beta) that transformers renames on load ----------

legacy = state_dict(
    [
        ('encoder.LayerNorm.gamma', contiguous('F32', [1.0, 1.0], [2])),
        ('encoder.LayerNorm.beta', contiguous('F32', [0.0, 0.5], [2])),
        ('encoder.dense.weight', contiguous('F32', [1.0, 2.0, 3.0, 4.0], [2, 2])),
    ]
)
write_zip('legacy.bin', *torch_pickle(legacy))

# --- shard-1.bin: the first shard of a sharded .bin checkpoint (legacy.bin is the second) -------

write_zip('shard-1.bin', *torch_pickle(state_dict([('embeddings.weight', contiguous('F32', [9.0, 8.0], [1, 2]))])))

# --- evil.bin: a pickle that would call os.system if unpickled by Python ------------------------

evil_pkl = b'\x80\x02cos\nsystem\nX\x0b\x00\x00\x00echo pwned!\x85R.'
write_zip('evil.bin', evil_pkl, {})

# --- zip64.bin: ZIP64 extra fields in local and central headers and a ZIP64 end record, with the
# classic end record's fields set to their "see ZIP64" sentinels (as in checkpoints over 4 GiB) ---

z64_sd = state_dict(
    [
        ('a', contiguous('F32', [1.0, 2.0, 3.0], [3])),
        ('b', contiguous('I64', [-4, 5], [2])),
    ]
)
saved_limit = zipfile.ZIP64_LIMIT
zipfile.ZIP64_LIMIT = 0  # every size and offset above 0 goes to a ZIP64 extra field
try:
    z64_path = write_zip('zip64.bin', *torch_pickle(z64_sd), prefix='xmod-large', zip64=True)
finally:
    zipfile.ZIP64_LIMIT = saved_limit
with open(z64_path, 'rb') as f:
    raw = bytearray(f.read())
eocd = raw.rfind(b'PK\x05\x06')
assert eocd > 0 and raw.rfind(b'PK\x06\x07') == eocd - 20, 'expected a ZIP64 locator before the end record'
struct.pack_into('<HHII', raw, eocd + 8, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF)
with open(z64_path, 'wb') as f:
    f.write(bytes(raw))

print('wrote', ', '.join(sorted(n for n in os.listdir(OUT) if n.endswith('.bin'))))
