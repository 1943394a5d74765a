"""``torch.save`` state dicts read and written without torch.

A ``torch.save`` file (torch >= 1.6) is a zip of ``data.pkl`` (a pickle whose tensors point at
storages by persistent id) and raw little-endian storages under ``data/``; the pre-1.6 "legacy"
format (pickles followed by raw storages in one stream) is read as well.
``read_torch_state_dict`` resolves only the handful of globals a state dict needs, so loading a
file cannot run arbitrary code. ``save_torch_state_dict`` writes the zip format from numpy
arrays (for tests and round trips); ``torch.load`` reads its files, with ``weights_only=True``.

Used by ``inception.load_fid_inception_params`` for pytorch-fid's weights file.
"""

from __future__ import annotations

import collections
import io
import os
import pickle
import struct
import zipfile
from typing import Dict, Mapping, Optional

import numpy as np

_STORAGE_DTYPES = {
    'DoubleStorage': np.float64, 'FloatStorage': np.float32, 'HalfStorage': np.float16,
    'BFloat16Storage': 'bfloat16', 'LongStorage': np.int64, 'IntStorage': np.int32,
    'ShortStorage': np.int16, 'CharStorage': np.int8, 'ByteStorage': np.uint8,
    'BoolStorage': np.bool_,
}
_LEGACY_MAGIC = 0x1950a86a20f9469cfc6c
_LEGACY_PROTOCOL = 1001


class TorchFormatError(ValueError):
  """The file is not a torch.save state dict this reader understands."""


class _StorageType(collections.namedtuple('_StorageType', 'name')):
  """Stands for ``torch.FloatStorage`` and its kin in a pickle."""

  @property
  def dtype(self):
    return _STORAGE_DTYPES[self.name]


class _Storage:
  """A flat storage; ``array`` is filled once its bytes are read (after the pickle, in the
  legacy format)."""

  def __init__(self, storage_type: _StorageType, key: str):
    self.storage_type, self.key, self.array = storage_type, key, None


class _LazyTensor(collections.namedtuple('_LazyTensor', 'storage offset size stride')):
  """A tensor view (offset, size, stride in elements) of a storage not read yet."""

  def materialize(self) -> np.ndarray:
    flat = self.storage.array
    if flat is None:
      raise TorchFormatError(f'storage {self.storage.key} was never read.')
    size, stride = tuple(self.size), tuple(self.stride)
    needed = self.offset + sum((n - 1) * s for n, s in zip(size, stride)) + 1 if all(size) else 0
    if needed > flat.size:
      raise TorchFormatError(f'tensor of size {size} runs past storage {self.storage.key}.')
    view = np.lib.stride_tricks.as_strided(
        flat[self.offset:], shape=size, strides=[s * flat.itemsize for s in stride])
    return np.array(view)  # a contiguous copy that owns its memory


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False,
                       backward_hooks=None, metadata=None):
  del requires_grad, backward_hooks, metadata  # inference weights only
  return _LazyTensor(storage, storage_offset, size, stride)


def _rebuild_tensor(storage, storage_offset, size, stride):
  return _LazyTensor(storage, storage_offset, size, stride)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, state=None):
  del requires_grad, backward_hooks, state
  return data


def _rebuild_from_type_v2(func, new_type, args, state):
  del new_type, state  # a torch.Tensor subclass; its data is all a state dict needs
  return func(*args)


_SAFE_GLOBALS = {
    ('collections', 'OrderedDict'): collections.OrderedDict,
    ('torch._utils', '_rebuild_tensor_v2'): _rebuild_tensor_v2,
    ('torch._utils', '_rebuild_tensor'): _rebuild_tensor,
    ('torch._utils', '_rebuild_parameter'): _rebuild_parameter,
    ('torch._utils', '_rebuild_parameter_with_state'): _rebuild_parameter,
    ('torch._tensor', '_rebuild_from_type_v2'): _rebuild_from_type_v2,
    ('torch', 'Tensor'): None,  # only ever passed through _rebuild_from_type_v2
    ('torch.nn.parameter', 'Parameter'): None,
}


class _StateDictUnpickler(pickle.Unpickler):
  """Resolves only the globals of a tensor state dict; storages come through persistent ids."""

  def __init__(self, file, storages: Dict[str, _Storage]):
    super().__init__(file)
    self.storages = storages

  def find_class(self, module, name):
    if module == 'torch' and name in _STORAGE_DTYPES:
      return _StorageType(name)
    if (module, name) in _SAFE_GLOBALS:
      return _SAFE_GLOBALS[(module, name)]
    raise TorchFormatError(f'{module}.{name} is not part of a tensor state dict; refusing to '
                           'unpickle it.')

  def persistent_load(self, pid):
    kind = pid[0].decode() if isinstance(pid[0], bytes) else pid[0]
    if kind != 'storage':
      raise TorchFormatError(f'unsupported persistent id {kind!r}.')
    storage_type, key = pid[1], str(pid[2])
    if not isinstance(storage_type, _StorageType):
      raise TorchFormatError(f'unsupported storage type {storage_type!r}.')
    if len(pid) > 5 and pid[5] is not None:
      raise TorchFormatError('storage views (torch < 0.4 files) are not supported.')
    if key not in self.storages:
      self.storages[key] = _Storage(storage_type, key)
    return self.storages[key]


def _to_array(raw: bytes, storage_type: _StorageType, big_endian: bool) -> np.ndarray:
  dtype = storage_type.dtype
  if dtype == 'bfloat16':  # no numpy dtype: the upper half of a float32
    bits = np.frombuffer(raw, '>u2' if big_endian else '<u2').astype(np.uint32)
    return (bits << 16).view(np.float32)
  return np.frombuffer(raw, np.dtype(dtype).newbyteorder('>' if big_endian else '<')
                       ).astype(dtype)


def _materialize(obj):
  if isinstance(obj, _LazyTensor):
    return obj.materialize()
  if isinstance(obj, dict):
    return type(obj)((k, _materialize(v)) for k, v in obj.items())
  if isinstance(obj, (list, tuple)) and not hasattr(obj, '_fields'):
    return type(obj)(_materialize(v) for v in obj)
  return obj


def _read_zip(path: str):
  with zipfile.ZipFile(path) as archive:
    names = archive.namelist()
    pickles = [n for n in names if n.endswith('data.pkl')]
    if len(pickles) != 1:
      raise TorchFormatError(f'{path}: expected one data.pkl in the zip, found {pickles}.')
    prefix = pickles[0][:-len('data.pkl')]
    byteorder = (archive.read(prefix + 'byteorder').decode().strip()
                 if prefix + 'byteorder' in names else 'little')
    storages: Dict[str, _Storage] = {}
    result = _StateDictUnpickler(io.BytesIO(archive.read(pickles[0])), storages).load()
    for key, storage in storages.items():
      entry = f'{prefix}data/{key}'
      if entry not in names:
        raise TorchFormatError(f'{path}: missing storage record {entry}.')
      storage.array = _to_array(archive.read(entry), storage.storage_type,
                                byteorder == 'big')
  return result


def _read_legacy(path: str):
  with open(path, 'rb') as f:
    if pickle.load(f) != _LEGACY_MAGIC:
      raise TorchFormatError(f'{path} is neither a zip nor a legacy torch.save file.')
    if pickle.load(f) != _LEGACY_PROTOCOL:
      raise TorchFormatError(f'{path}: unsupported legacy protocol version.')
    sys_info = pickle.load(f)
    big_endian = not sys_info.get('little_endian', True)
    storages: Dict[str, _Storage] = {}
    result = _StateDictUnpickler(f, storages).load()
    for key in pickle.load(f):  # the storages' keys, in the order of their bytes
      storage = storages[str(key)]
      itemsize = 2 if storage.storage_type.dtype == 'bfloat16' else np.dtype(
          storage.storage_type.dtype).itemsize
      (numel,) = struct.unpack('>q' if big_endian else '<q', f.read(8))
      raw = f.read(numel * itemsize)
      if len(raw) != numel * itemsize:
        raise TorchFormatError(f'{path}: truncated storage {key}.')
      storage.array = _to_array(raw, storage.storage_type, big_endian)
  return result


def read_torch_state_dict(path: str) -> Dict[str, np.ndarray]:
  """Reads a ``torch.save``d state dict without torch: name -> numpy array (in torch's layout).

  Both the zip format (torch >= 1.6) and the legacy stream format are read.
  """
  if zipfile.is_zipfile(path):
    result = _read_zip(path)
  else:
    result = _read_legacy(path)
  result = _materialize(result)
  if isinstance(result, dict) and 'state_dict' in result and isinstance(result['state_dict'],
                                                                         dict):
    result = result['state_dict']  # a checkpoint dict that wraps the state dict
  if not isinstance(result, dict):
    raise TorchFormatError(f'{path} holds a {type(result).__name__}, not a state dict.')
  return dict(result)


class _Global:
  """A reference to ``module.name`` that the writer emits without importing the module."""

  def __init__(self, module: str, name: str):
    self.module, self.name = module, name

  def __call__(self, *args):  # pickle's save_reduce insists on a callable
    raise TypeError(f'{self.module}.{self.name} is a reference for pickling only.')


class _TensorRef:
  def __init__(self, key: str, array: np.ndarray, storage_name: str):
    self.key, self.array, self.storage_name = key, array, storage_name


class _StoragePid:
  """Marks a tensor's storage, which the pickler writes as a persistent id."""

  def __init__(self, tensor: _TensorRef):
    self.tensor = tensor


class _OrderedDictCall:
  """An empty ``collections.OrderedDict()``, emitted as the call (torch's backward_hooks)."""


class _TorchPickler(pickle._Pickler):  # pylint: disable=protected-access
  """The pure-Python pickler, taught to emit torch's globals and storage persistent ids."""

  dispatch = dict(pickle._Pickler.dispatch)  # pylint: disable=protected-access

  def _save_global_ref(self, obj: _Global):
    self.write(pickle.GLOBAL + f'{obj.module}\n{obj.name}\n'.encode())

  def _save_tensor(self, obj: _TensorRef):
    array = obj.array
    strides = tuple(s // array.itemsize for s in array.strides) if array.ndim else ()
    self.save_reduce(_Global('torch._utils', '_rebuild_tensor_v2'),
                     (_StoragePid(obj), 0, tuple(array.shape), strides, False,
                      _OrderedDictCall()), obj=obj)

  def _save_ordered_dict_call(self, obj):
    self.save_reduce(_Global('collections', 'OrderedDict'), (), obj=obj)

  dispatch[_Global] = _save_global_ref
  dispatch[_TensorRef] = _save_tensor
  dispatch[_OrderedDictCall] = _save_ordered_dict_call

  def persistent_id(self, obj):
    if isinstance(obj, _StoragePid):
      ref = obj.tensor
      return ('storage', _Global('torch', ref.storage_name), ref.key, 'cpu', ref.array.size)
    return None


_NUMPY_TO_STORAGE = {np.dtype(v): k for k, v in _STORAGE_DTYPES.items() if k != 'BFloat16Storage'}


def save_torch_state_dict(path: str, state_dict: Mapping[str, np.ndarray],
                          archive_name: Optional[str] = None) -> None:
  """Writes name -> numpy array as a ``torch.save`` zip file (protocol 2, as torch writes).

  What ``torch.load`` and ``read_torch_state_dict`` read back: an OrderedDict of tensors, one
  storage each, little-endian, under ``<archive_name>/`` (the file's stem by default).
  """
  archive_name = archive_name or os.path.splitext(os.path.basename(path))[0]
  tensors = collections.OrderedDict()
  for i, (name, value) in enumerate(state_dict.items()):
    array = np.array(value, order='C')  # (np.ascontiguousarray would make 0-d arrays 1-d)
    native = array.dtype.newbyteorder('=')
    if native not in _NUMPY_TO_STORAGE:
      raise TypeError(f'{name}: dtype {array.dtype} has no torch storage type.')
    tensors[name] = _TensorRef(str(i), array.astype(native.newbyteorder('<')),
                               _NUMPY_TO_STORAGE[native])
  buffer = io.BytesIO()
  _TorchPickler(buffer, protocol=2).dump(tensors)
  with zipfile.ZipFile(path, 'w', zipfile.ZIP_STORED) as archive:
    archive.writestr(f'{archive_name}/data.pkl', buffer.getvalue())
    archive.writestr(f'{archive_name}/byteorder', 'little')
    for ref in tensors.values():
      archive.writestr(f'{archive_name}/data/{ref.key}', ref.array.tobytes())
    archive.writestr(f'{archive_name}/version', '3\n')
