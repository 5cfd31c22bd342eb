"""Tests for despite_core.data.pointcloud2 (no ROS installation needed).

Messages are faked with types.SimpleNamespace; real rosbags / rclpy message
classes are exercised only when those packages are importable.
"""

import array
import ast
import struct
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from despite_core.data import pointcloud2 as pc2
from despite_core.data.pointcloud2 import Field, PointCloud2Error

ALL_DATATYPES = sorted(pc2.DATATYPE_TO_DTYPE)


def make_msg(fields, point_step, data, width, height=1, row_step=None, is_bigendian=False,
             is_dense=True):
    """A duck-typed PointCloud2."""
    return SimpleNamespace(
        header=SimpleNamespace(frame_id='', stamp=SimpleNamespace(sec=0, nanosec=0)),
        height=height, width=width, fields=list(fields), is_bigendian=is_bigendian,
        point_step=point_step, row_step=point_step * width if row_step is None else row_step,
        data=data, is_dense=is_dense)


def msg_from_arrays(arrays, height=1, **kw):
    return pc2.fill_message(make_msg([], 0, b'', 0), arrays, height=height, **kw)


def random_xyzi(n, seed=0):
    rng = np.random.default_rng(seed)
    return {
        'x': rng.normal(size=n).astype(np.float32),
        'y': rng.normal(size=n).astype(np.float32),
        'z': rng.normal(size=n).astype(np.float32),
        'intensity': rng.uniform(0, 255, n).astype(np.float32),
        'ring': rng.integers(0, 128, n).astype(np.uint16),
        't': rng.uniform(0, 0.1, n).astype(np.float64),
    }


# --------------------------------------------------------------------------- dtypes


def test_module_imports_only_numpy_and_stdlib():
    """The codec must stay usable without ROS or torch (offline tools, CI)."""
    tree = ast.parse(Path(pc2.__file__).read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(a.name.split('.')[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            imported.add(node.module.split('.')[0])
    assert imported - {'numpy'} <= set(sys.stdlib_module_names) | {'__future__'}, imported


def test_datatype_constants_match_pointfield():
    assert (pc2.INT8, pc2.UINT8, pc2.INT16, pc2.UINT16, pc2.INT32, pc2.UINT32,
            pc2.FLOAT32, pc2.FLOAT64) == (1, 2, 3, 4, 5, 6, 7, 8)
    assert pc2.DATATYPE_TO_DTYPE[pc2.FLOAT32] == np.float32
    assert pc2.DATATYPE_TO_DTYPE[pc2.UINT16] == np.uint16


def test_fields_dtype_respects_offsets_and_padding():
    fields = [Field('x', 0, pc2.FLOAT32), Field('y', 4, pc2.FLOAT32),
              Field('z', 8, pc2.FLOAT32), Field('intensity', 16, pc2.FLOAT32)]
    dt = pc2.fields_dtype(fields, 32, False)
    assert dt.itemsize == 32
    assert dt.fields['intensity'][1] == 16
    assert dt.fields['x'][0] == np.dtype('<f4')
    assert pc2.fields_dtype(fields, 32, True).fields['x'][0] == np.dtype('>f4')


def test_fields_dtype_count_gives_subarray():
    dt = pc2.fields_dtype([Field('normal', 0, pc2.FLOAT32, 3)], 12, False)
    assert dt.fields['normal'][0].shape == (3,)


@pytest.mark.parametrize('fields, point_step, match', [
    ([Field('x', 0, 9)], 4, r"field 'x' has unknown datatype 9"),
    ([Field('x', 0, 0)], 4, r'unknown datatype 0'),
    ([Field('x', 30, pc2.FLOAT32)], 32, r"field 'x' .*ends at byte 34, past point_step 32"),
    ([Field('x', 0, pc2.FLOAT64)], 4, r"past point_step 4"),
    ([Field('x', 0, pc2.FLOAT32), Field('y', 2, pc2.FLOAT32)], 8, r"'x' .*and 'y' .*overlap"),
    # overlap detected even when fields are listed out of offset order
    ([Field('b', 4, pc2.FLOAT32), Field('a', 0, pc2.FLOAT64)], 16, r"'a' .*and 'b' .*overlap"),
    ([Field('x', 0, pc2.FLOAT32), Field('x', 4, pc2.FLOAT32)], 8, r"duplicate field name 'x'"),
    ([Field('', 0, pc2.FLOAT32)], 4, r"empty name"),          # numpy would call it 'f0'
    ([Field('x', 0, pc2.FLOAT32, 0)], 4, r"field 'x' has count 0"),
    ([Field('x', -4, pc2.FLOAT32)], 4, r"field 'x' has negative offset"),
])
def test_fields_dtype_errors(fields, point_step, match):
    with pytest.raises(PointCloud2Error, match=match):
        pc2.fields_dtype(fields, point_step, False)


def test_error_is_value_error():
    assert issubclass(PointCloud2Error, ValueError)


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize('datatype', ALL_DATATYPES)
@pytest.mark.parametrize('bigendian', [False, True])
def test_round_trip_every_datatype(datatype, bigendian):
    dt = pc2.DATATYPE_TO_DTYPE[datatype]
    if dt.kind == 'f':
        values = np.array([0.0, -1.5, 3.25, np.finfo(dt).max, np.finfo(dt).min], dtype=dt)
    else:
        info = np.iinfo(dt)
        values = np.array([0, 1, info.min, info.max, info.max // 3], dtype=dt)
    xyz = np.arange(values.size, dtype=np.float32)
    msg = msg_from_arrays({'x': xyz, 'y': xyz, 'z': xyz, 'v': values}, is_bigendian=bigendian)
    assert msg.fields[3].datatype == datatype
    assert msg.is_bigendian is bigendian
    out = pc2.decode(msg)
    assert out.dtype['v'] == dt and out.dtype['v'].isnative
    np.testing.assert_array_equal(out['v'], values)
    np.testing.assert_array_equal(pc2.decode_xyz(msg), np.stack([xyz] * 3, axis=1))


def test_encode_layout_is_naturally_aligned():
    arrays = {'x': np.zeros(3, np.float32), 'flag': np.zeros(3, np.uint8),
              't': np.zeros(3, np.float64), 'ring': np.zeros(3, np.uint16)}
    fields, point_step, data = pc2.encode(arrays)
    assert [(f.name, f.offset, f.datatype, f.count) for f in fields] == [
        ('x', 0, pc2.FLOAT32, 1), ('flag', 4, pc2.UINT8, 1),
        ('t', 8, pc2.FLOAT64, 1), ('ring', 16, pc2.UINT16, 1)]
    assert point_step == 24  # 18 packed bytes rounded up to a multiple of 8
    assert len(data) == 3 * 24


def test_encode_explicit_point_step_and_padding_bytes_are_zero():
    arrays = {'x': np.ones(2, np.float32), 'y': np.ones(2, np.float32),
              'z': np.ones(2, np.float32), 'i': np.ones(2, np.float32)}
    fields, point_step, data = pc2.encode(arrays, point_step=32)
    assert point_step == 32 and len(data) == 64
    assert data[16:32] == bytes(16)
    with pytest.raises(PointCloud2Error, match=r'point_step 12 is smaller than the 16 bytes'):
        pc2.encode(arrays, point_step=12)


def test_encode_datatype_override_casts():
    fields, _, data = pc2.encode({'ring': np.array([1.0, 2.0, 300.0])}, datatypes={'ring': pc2.UINT16})
    assert fields[0].datatype == pc2.UINT16
    assert np.frombuffer(data, '<u2').tolist() == [1, 2, 300]
    with pytest.raises(PointCloud2Error, match=r"unknown field\(s\) nope"):
        pc2.encode({'x': np.zeros(1, np.float32)}, datatypes={'nope': pc2.FLOAT32})
    with pytest.raises(PointCloud2Error, match=r"field 'x' has unknown datatype 42"):
        pc2.encode({'x': np.zeros(1, np.float32)}, datatypes={'x': 42})


def test_encode_structured_array_input():
    pts = np.zeros(4, dtype=[('x', '<f4'), ('y', '<f4'), ('z', '<f4'), ('rgb', '<u4')])
    pts['x'] = [1, 2, 3, 4]
    pts['rgb'] = 0xFF00FF
    out = pc2.decode(msg_from_arrays(pts))
    assert out.dtype.names == ('x', 'y', 'z', 'rgb')
    np.testing.assert_array_equal(out['x'], [1, 2, 3, 4])
    assert (out['rgb'] == 0xFF00FF).all()


@pytest.mark.parametrize('bad', [np.zeros(3, np.int64), np.zeros(3, np.complex64),
                                 np.zeros(3, bool), np.zeros(3, np.float16)])
def test_encode_unsupported_dtype(bad):
    with pytest.raises(PointCloud2Error, match=rf"field 'v' has unsupported dtype {bad.dtype}"):
        pc2.encode({'x': np.zeros(3, np.float32), 'v': bad})


def test_encode_mismatched_lengths():
    with pytest.raises(PointCloud2Error, match=r"field 'y' has 4 points but field 'x' has 5"):
        pc2.encode({'x': np.zeros(5, np.float32), 'y': np.zeros(4, np.float32)})


def test_encode_rejects_bad_input():
    with pytest.raises(PointCloud2Error, match='at least one field'):
        pc2.encode({})
    with pytest.raises(PointCloud2Error, match=r'plain float32 array'):
        pc2.encode(np.zeros((3, 3), np.float32))
    with pytest.raises(PointCloud2Error, match=r"field 'x' must have shape"):
        pc2.encode({'x': np.zeros((2, 2, 2), np.float32)})


# --------------------------------------------------------------------------- decoding layouts


def test_point_step_padding():
    """16 bytes of fields in a 32-byte point: padding must be skipped."""
    n = 5
    raw = np.zeros((n, 32), np.uint8)
    vals = np.arange(n * 4, dtype='<f4').reshape(n, 4)
    raw[:, :16] = vals.view(np.uint8)
    raw[:, 16:] = 0xAB  # garbage in the padding
    fields = [Field(c, 4 * i, pc2.FLOAT32) for i, c in enumerate(['x', 'y', 'z', 'intensity'])]
    msg = make_msg(fields, 32, raw.tobytes(), n)
    out = pc2.decode(msg)
    assert out.dtype.itemsize == 16  # padding dropped
    np.testing.assert_array_equal(out['intensity'], vals[:, 3])
    np.testing.assert_array_equal(pc2.decode_xyz(msg), vals[:, :3])


def test_row_padding_and_organised_cloud():
    height, width, step, row_step = 3, 4, 12, 4 * 12 + 8
    rows = np.full((height, row_step), 0xEE, np.uint8)  # row padding is garbage
    xyz = np.arange(height * width * 3, dtype='<f4').reshape(height, width, 3)
    rows[:, :width * step] = xyz.reshape(height, -1).view(np.uint8)
    fields = [Field(c, 4 * i, pc2.FLOAT32) for i, c in enumerate('xyz')]
    msg = make_msg(fields, step, rows.tobytes(), width, height=height, row_step=row_step)
    out = pc2.decode(msg)
    assert out.shape == (height * width,)
    np.testing.assert_array_equal(out['x'], xyz[..., 0].ravel())  # row-major order
    np.testing.assert_array_equal(pc2.decode_xyz(msg), xyz.reshape(-1, 3))


def test_organised_round_trip_via_fill_message():
    a = random_xyzi(6 * 8)
    msg = msg_from_arrays(a, height=6)
    assert (msg.height, msg.width, msg.row_step) == (6, 8, 8 * msg.point_step)
    np.testing.assert_array_equal(pc2.decode(msg)['ring'], a['ring'])
    with pytest.raises(PointCloud2Error, match=r'height\*width = 5\*9 = 45 but arrays hold 48'):
        msg_from_arrays(a, height=5, width=9)


def test_big_endian_message_built_by_hand():
    pts = [(1.5, -2.25, 3.0, 1000, -7, 2.0 ** 40), (0.0, 1.0, -1.0, 65535, 127, -0.5)]
    # x,y,z >f4 @0,4,8; ring >u2 @12; tag i1 @14; t >f8 @16; point_step 24
    data = b''.join(struct.pack('>fffHbxd', *p) for p in pts)
    fields = [Field('x', 0, pc2.FLOAT32), Field('y', 4, pc2.FLOAT32), Field('z', 8, pc2.FLOAT32),
              Field('ring', 12, pc2.UINT16), Field('tag', 14, pc2.INT8), Field('t', 16, pc2.FLOAT64)]
    msg = make_msg(fields, 24, data, 2, is_bigendian=True)
    out = pc2.decode(msg)
    assert all(out.dtype[n].isnative for n in out.dtype.names)
    assert out['ring'].tolist() == [1000, 65535]
    assert out['tag'].tolist() == [-7, 127]
    assert out['t'].tolist() == [2.0 ** 40, -0.5]
    np.testing.assert_array_equal(pc2.decode_xyz(msg), [p[:3] for p in pts])
    # Same bytes read as little-endian must give different values (sanity check).
    assert pc2.decode(make_msg(fields, 24, data, 2))['ring'].tolist() != [1000, 65535]


def test_big_endian_encode_matches_struct():
    _, step, data = pc2.encode({'x': np.array([1.5], np.float32), 'r': np.array([258], np.uint16)},
                               is_bigendian=True)
    assert step == 8 and data == struct.pack('>fH2x', 1.5, 258)


def test_count_greater_than_one():
    normals = np.arange(12, dtype=np.float32).reshape(4, 3)
    a = {'x': np.ones(4, np.float32), 'y': np.ones(4, np.float32), 'z': np.ones(4, np.float32),
         'normal': normals, 'label': np.arange(4, dtype=np.uint8)}
    for be in (False, True):
        msg = msg_from_arrays(a, is_bigendian=be)
        f = {f.name: f for f in msg.fields}
        assert (f['normal'].offset, f['normal'].count, f['label'].offset) == (12, 3, 24)
        out = pc2.decode(msg)
        np.testing.assert_array_equal(out['normal'], normals)
        got = pc2.decode_fields(msg, ['normal', 'label'])
        assert got['normal'].shape == (4, 3) and got['normal'].flags.c_contiguous
        np.testing.assert_array_equal(got['normal'], normals)


@pytest.mark.parametrize('datatype', ALL_DATATYPES)
def test_decode_xyz_any_numeric_datatype(datatype):
    dt = pc2.DATATYPE_TO_DTYPE[datatype]
    v = np.array([0, 1, 100], dtype=dt)
    msg = msg_from_arrays({'x': v, 'y': v, 'z': v})
    xyz = pc2.decode_xyz(msg)
    assert xyz.dtype == np.float32 and xyz.shape == (3, 3)
    np.testing.assert_array_equal(xyz[:, 2], [0, 1, 100])


@pytest.mark.parametrize('data_type', [bytes, bytearray, memoryview, 'array', 'ndarray', list])
def test_data_container_types(data_type):
    a = random_xyzi(10)
    fields, step, data = pc2.encode(a)
    if data_type == 'array':
        data = array.array('B', data)
    elif data_type == 'ndarray':
        data = np.frombuffer(data, np.uint8).copy()
    else:
        data = data_type(data)
    msg = make_msg(fields, step, data, 10)
    np.testing.assert_array_equal(pc2.decode(msg)['t'], a['t'])


def test_decode_subset_of_fields_in_requested_order():
    a = random_xyzi(7)
    out = pc2.decode(msg_from_arrays(a), fields=['ring', 'x'])
    assert out.dtype.names == ('ring', 'x')
    np.testing.assert_array_equal(out['ring'], a['ring'])


def test_empty_cloud():
    msg = msg_from_arrays({c: np.zeros(0, np.float32) for c in 'xyz'})
    assert msg.width == 0 and msg.data == b''
    assert pc2.decode(msg).shape == (0,)
    assert pc2.decode_xyz(msg).shape == (0, 3)


# --------------------------------------------------------------------------- NaNs


def test_nan_removal_and_decode_fields_mask():
    a = random_xyzi(6)
    a['x'][1] = np.nan
    a['z'][4] = np.inf
    msg = msg_from_arrays(a)
    assert msg.is_dense is False
    xyz = pc2.decode_xyz(msg)
    keep = [0, 2, 3, 5]
    np.testing.assert_array_equal(xyz, np.stack([a[c] for c in 'xyz'], 1)[keep])
    assert pc2.decode_xyz(msg, remove_nan=False).shape == (6, 3)
    got = pc2.decode_fields(msg, ['intensity', 'ring'])
    np.testing.assert_array_equal(got['intensity'], a['intensity'][keep])
    np.testing.assert_array_equal(got['ring'], a['ring'][keep])
    assert pc2.decode_fields(msg, ['ring'], remove_nan_xyz=False)['ring'].shape == (6,)


def test_nan_removed_even_if_is_dense_lies():
    a = {c: np.array([1.0, np.nan], np.float32) for c in 'xyz'}
    msg = msg_from_arrays(a, is_dense=True)
    assert msg.is_dense is True
    assert pc2.decode_xyz(msg).shape == (1, 3)


def test_is_dense_default_true_when_finite():
    assert msg_from_arrays(random_xyzi(3)).is_dense is True
    assert msg_from_arrays({'intensity': np.array([np.nan], np.float32)}).is_dense is True


# --------------------------------------------------------------------------- errors


def test_data_too_short_error_message():
    fields = [Field(c, 4 * i, pc2.FLOAT32) for i, c in enumerate('xyz')]
    msg = make_msg(fields, 32, bytes(1200), 64)
    with pytest.raises(PointCloud2Error) as exc:
        pc2.decode(msg)
    assert str(exc.value) == ('PointCloud2 data holds 1200 bytes but width*height*point_step = '
                              '64*1*32 = 2048')
    with pytest.raises(PointCloud2Error, match='width\\*height\\*point_step'):
        pc2.decode_xyz(msg)


def test_data_length_with_row_padding_error():
    fields = [Field('x', 0, pc2.FLOAT32)]
    msg = make_msg(fields, 4, bytes(40), 4, height=2, row_step=24)
    with pytest.raises(PointCloud2Error, match=r'holds 40 bytes but height\*row_step = 2\*24 = 48'):
        pc2.decode(msg)


def test_data_too_long_is_rejected():
    msg = make_msg([Field('x', 0, pc2.FLOAT32)], 4, bytes(20), 4)
    with pytest.raises(PointCloud2Error, match='holds 20 bytes'):
        pc2.decode(msg)


def test_row_step_too_small():
    msg = make_msg([Field('x', 0, pc2.FLOAT32)], 4, bytes(8), 4, height=2, row_step=4)
    with pytest.raises(PointCloud2Error, match=r'row_step 4 is smaller than width\*point_step = 4\*4 = 16'):
        pc2.decode(msg)


@pytest.mark.parametrize('missing', ['x', 'y', 'z'])
def test_missing_xyz(missing):
    a = {c: np.zeros(2, np.float32) for c in 'xyz' if c != missing}
    a['intensity'] = np.zeros(2, np.float32)
    msg = msg_from_arrays(a)
    with pytest.raises(PointCloud2Error, match=rf'lacks coordinate field\(s\) {missing}; available fields'):
        pc2.decode_xyz(msg)
    with pytest.raises(PointCloud2Error, match='lacks coordinate'):
        pc2.decode_fields(msg, ['intensity'])


def test_unknown_requested_field_lists_available():
    msg = msg_from_arrays(random_xyzi(2))
    with pytest.raises(PointCloud2Error,
                       match=r"unknown field\(s\) 'rgb'; available fields: x, y, z, intensity, ring, t"):
        pc2.decode(msg, fields=['x', 'rgb'])
    with pytest.raises(PointCloud2Error, match=r"unknown field\(s\) 'rgb'"):
        pc2.decode_fields(msg, ['rgb'])


@pytest.mark.parametrize('fields, match', [
    ([Field('x', 0, pc2.FLOAT32), Field('y', 2, pc2.FLOAT32)], 'overlap'),
    ([Field('x', 0, pc2.FLOAT32), Field('y', 10, pc2.FLOAT32)], 'past point_step 12'),
    ([Field('x', 0, 11)], 'unknown datatype 11'),
])
def test_malformed_fields_rejected_by_decode(fields, match):
    msg = make_msg(fields, 12, bytes(24), 2)
    with pytest.raises(PointCloud2Error, match=match):
        pc2.decode(msg)


# --------------------------------------------------------------------------- fill_message


def test_fill_message_header_and_factory():
    made = []

    def factory(name, offset, datatype, count):
        made.append(name)
        return SimpleNamespace(name=name, offset=offset, datatype=datatype, count=count)

    msg = msg_from_arrays(random_xyzi(4), frame_id='lidar', stamp=12.25, field_factory=factory)
    assert made == ['x', 'y', 'z', 'intensity', 'ring', 't']
    assert msg.header.frame_id == 'lidar'
    assert (msg.header.stamp.sec, msg.header.stamp.nanosec) == (12, 250_000_000)
    stamp = SimpleNamespace(sec=3, nanosec=4)
    assert pc2.fill_message(msg, random_xyzi(4), stamp=stamp).header.stamp is stamp
    assert isinstance(pc2.fill_message(msg, random_xyzi(4)).fields[0], Field)  # default factory


def test_fill_message_keeps_data_container_type():
    a = random_xyzi(5)
    m_arr = make_msg([], 0, array.array('B'), 0)
    assert isinstance(pc2.fill_message(m_arr, a).data, array.array)
    m_np = make_msg([], 0, np.zeros(0, np.uint8), 0)
    data = pc2.fill_message(m_np, a).data
    assert isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 1
    for m in (m_arr, m_np):
        np.testing.assert_array_equal(pc2.decode(m)['t'], a['t'])


def test_fill_message_rejects_unknown_kwargs():
    with pytest.raises(TypeError, match='bogus'):
        msg_from_arrays(random_xyzi(2), bogus=1)


# --------------------------------------------------------------------------- real message libraries


def test_rosbags_round_trip():
    typesys = pytest.importorskip('rosbags.typesys', reason='rosbags is not installed')
    ts = typesys.get_typestore(typesys.Stores.ROS2_JAZZY)
    PointCloud2 = ts.types['sensor_msgs/msg/PointCloud2']
    PointField = ts.types['sensor_msgs/msg/PointField']
    Header = ts.types['std_msgs/msg/Header']
    Time = ts.types['builtin_interfaces/msg/Time']
    msg = PointCloud2(header=Header(stamp=Time(sec=0, nanosec=0), frame_id=''), height=0, width=0,
                      fields=[], is_bigendian=False, point_step=0, row_step=0,
                      data=np.zeros(0, np.uint8), is_dense=True)
    a = random_xyzi(100)
    a['y'][7] = np.nan
    pc2.fill_message(msg, a, height=10, frame_id='os_lidar', stamp=5.5, field_factory=PointField)
    assert isinstance(msg.fields[0], PointField)
    raw = ts.serialize_cdr(msg, PointCloud2.__msgtype__)
    back = ts.deserialize_cdr(raw, PointCloud2.__msgtype__)
    assert back.header.frame_id == 'os_lidar'
    assert (back.header.stamp.sec, back.header.stamp.nanosec) == (5, 500_000_000)
    assert (back.height, back.width, back.is_dense) == (10, 10, False)
    out = pc2.decode(back)
    for name, values in a.items():
        np.testing.assert_array_equal(out[name], values)
    assert pc2.decode_xyz(back).shape == (99, 3)


def test_rclpy_round_trip():
    msg_mod = pytest.importorskip('sensor_msgs.msg', reason='ROS 2 sensor_msgs is not available')
    serialization = pytest.importorskip('rclpy.serialization', reason='rclpy is not available')
    a = random_xyzi(64)
    msg = pc2.fill_message(msg_mod.PointCloud2(), a, height=4, frame_id='lidar', stamp=1.0,
                           field_factory=msg_mod.PointField)
    back = serialization.deserialize_message(serialization.serialize_message(msg), msg_mod.PointCloud2)
    assert (back.height, back.width, back.header.stamp.sec) == (4, 16, 1)
    out = pc2.decode(back)
    for name, values in a.items():
        np.testing.assert_array_equal(out[name], values)
