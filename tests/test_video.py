"""data_prep/video.py: decoding (PyAV, OpenCV fallback), sampling, bad inputs.

Also holds the small video-making helpers the tracking and pipeline tests
share (``write_video``, ``draw_face``): videos are written with PyAV, faces
are drawn cartoon heads the OpenCV Haar cascade detects.
"""

import struct

import av
import cv2
import numpy as np
import pytest

from data_prep import video
from data_prep.errors import ClipError


# ---------------------------------------------------------------- helpers

def write_video(path, frames, fps=25, codec="libx264", options=None):
  """Writes uint8[N, H, W, 3] RGB frames with PyAV; returns the path."""
  with av.open(str(path), "w", options=options or {}) as c:
    s = c.add_stream(codec, rate=fps)
    s.height, s.width = frames[0].shape[:2]
    s.pix_fmt = "yuvj420p" if codec == "mjpeg" else "yuv420p"
    if codec == "mjpeg":
      s.options = {"qmin": "2", "qmax": "4"}
    for f in frames:
      for pk in s.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")):
        c.mux(pk)
    for pk in s.encode():
      c.mux(pk)
  return str(path)


def draw_face(img, cx, cy, r, skin=(226, 182, 146), hair=(60, 40, 30), eyes_closed=False):
  """Draws a frontal cartoon head of half-height ``r`` centred at (cx, cy), in place.

  Made for the Haar cascade: a dark band of brows and eye sockets over
  bright cheeks and a dark mouth (white eyeballs would break the pattern).
  Its Haar box is about [cx - r, cy - r, cx + r, cy + r]."""
  sk = np.asarray(skin, np.float64)
  cv2.ellipse(img, (cx, cy), (int(r * 0.78), r), 0, 0, 360, tuple(sk), -1, cv2.LINE_AA)
  cv2.ellipse(img, (cx, cy - int(r * 0.62)), (int(r * 0.82), int(r * 0.45)), 0, 180, 360, hair, -1,
              cv2.LINE_AA)
  for s in (-1, 1):
    ex, ey = cx + s * int(r * 0.33), cy - int(r * 0.12)
    cv2.ellipse(img, (ex, ey), (int(r * 0.22), int(r * 0.13)), 0, 0, 360, tuple(sk * 0.7), -1,
                cv2.LINE_AA)                                                   # eye socket
    cv2.line(img, (ex - int(r * 0.22), ey - int(r * 0.2)), (ex + int(r * 0.2), ey - int(r * 0.22)),
             hair, max(2, int(r * 0.09)), cv2.LINE_AA)                         # brow
    if eyes_closed:
      cv2.line(img, (ex - int(r * 0.16), ey), (ex + int(r * 0.16), ey), tuple(sk * 0.45),
               max(1, int(r * 0.06)), cv2.LINE_AA)
    else:
      cv2.ellipse(img, (ex, ey), (int(r * 0.14), int(r * 0.08)), 0, 0, 360, (40, 30, 30), -1,
                  cv2.LINE_AA)
  cv2.line(img, (cx, cy - int(r * 0.05)), (cx, cy + int(r * 0.28)), tuple(sk * 0.8),
           max(1, int(r * 0.05)), cv2.LINE_AA)                                 # nose
  cv2.ellipse(img, (cx, cy + int(r * 0.5)), (int(r * 0.28), int(r * 0.09)), 0, 0, 360,
              (120, 50, 50), -1, cv2.LINE_AA)                                  # mouth
  return img


def colour_frames(n, h=48, w=64):
  """n frames, frame i a flat colour that encodes i (for decode checks)."""
  out = np.zeros((n, h, w, 3), np.uint8)
  for i in range(n):
    out[i] = ((i * 37) % 200 + 30, (i * 11) % 200 + 30, 255 - (i * 23) % 200)
  return out


# ------------------------------------------------------------------ decode

@pytest.mark.parametrize("name,codec", [("clip.mp4", "libx264"), ("clip.avi", "mjpeg")])
def test_decode_roundtrip(tmp_path, name, codec):
  src = colour_frames(20)
  v = video.decode_video(write_video(tmp_path / name, src, fps=25, codec=codec))
  assert v.frames.shape == src.shape and v.frames.dtype == np.uint8
  assert v.backend == "pyav" and v.original_size == (48, 64)
  assert v.fps == pytest.approx(25.0)
  # lossy codecs: every frame's mean colour within a few levels of what was written
  err = np.abs(v.frames.reshape(20, -1, 3).mean(1) - src.reshape(20, -1, 3).mean(1))
  assert err.max() < 6, err.max()


def test_opencv_fallback_decodes_the_same(tmp_path):
  src = colour_frames(12)
  p = write_video(tmp_path / "clip.avi", src, codec="mjpeg")
  a, b = video._decode_pyav(p, None), video._decode_opencv(p, None)
  assert b.backend == "opencv" and b.frames.shape == a.frames.shape
  assert np.abs(a.frames.astype(int) - b.frames.astype(int)).mean() < 3


def test_decode_converts_only_the_kept_frames(tmp_path):
  p = write_video(tmp_path / "clip.mp4", colour_frames(30))
  keep = lambda n: [0, 5, n - 1]
  for decode in (video._decode_pyav, video._decode_opencv):
    every, kept = decode(p, None), decode(p, None, keep, 4)
    assert kept.num_frames == every.num_frames == 30
    np.testing.assert_array_equal(kept.index, [0, 5, 29])
    np.testing.assert_array_equal(kept.frames, every.frames[[0, 5, 29]])   # the same to the bit
    assert every.small is None and kept.small.shape == (30, 12, 16, 3)
    # flat colours: every 4th pixel of every frame, within the codec's error
    assert np.abs(kept.small.astype(int) - every.frames[:, ::4, ::4]).mean() < 3, decode


def test_decode_keeps_the_right_frames_when_the_container_miscounts(tmp_path):
  """Cut by one byte, the file declares 300 frames and decodes 297 (not
  truncation: within the slack). The frames to keep depend on the true
  count, so PyAV decodes a second time, knowing it."""
  good = write_video(tmp_path / "good.mp4", colour_frames(300), options={"movflags": "faststart"})
  cut = tmp_path / "cut.mp4"
  cut.write_bytes(open(good, "rb").read()[:-1])
  with av.open(str(cut)) as c:
    declared = c.streams.video[0].frames
  every = video.decode_video(str(cut))
  n = len(every.frames)
  assert declared == 300 and declared - 6 <= n < declared, (declared, n)
  keep = lambda m: video.sample_indices(m, 8)
  assert set(keep(n)) != set(keep(declared))
  v = video.decode_video(str(cut), keep=keep)
  assert v.num_frames == n and v.passes == 2 and every.passes == 1
  np.testing.assert_array_equal(v.index, keep(n))
  np.testing.assert_array_equal(v.frames, every.frames[keep(n)])


def _lying_avi(tmp_path, n=40, declares=10):
  """An MJPEG AVI of ``n`` frames whose headers (avih total frames, strh
  length) declare ``declares``: both PyAV and OpenCV believe them."""
  data = bytearray(open(write_video(tmp_path / "true.avi", colour_frames(n), codec="mjpeg"),
                        "rb").read())
  for tag, offset in ((b"avih", 16), (b"strh", 32)):
    at = data.find(tag) + 8 + offset
    assert struct.unpack("<I", data[at:at + 4]) == (n,)
    data[at:at + 4] = struct.pack("<I", declares)
  path = tmp_path / "lying.avi"
  path.write_bytes(bytes(data))
  return str(path)


def test_opencv_fallback_keeps_the_right_frames_when_the_container_miscounts(tmp_path):
  p = _lying_avi(tmp_path)
  keep = lambda m: video.sample_indices(m, 4)
  every, kept = video._decode_opencv(p, None), video._decode_opencv(p, None, keep, 4)
  assert every.num_frames == kept.num_frames == 40 and kept.passes == 2
  np.testing.assert_array_equal(kept.frames, every.frames[keep(40)])
  assert kept.small.shape == (40, 12, 16, 3)


@pytest.mark.parametrize("decode", [video._decode_pyav, video._decode_opencv],
                         ids=["pyav", "opencv"])
def test_a_video_longer_than_the_cap_is_refused_by_name(tmp_path, decode):
  """By the declared count before decoding, and by counting while decoding
  when the container declares too few frames (the lying AVI: 10 of 40)."""
  honest = write_video(tmp_path / "long.avi", colour_frames(40), codec="mjpeg")
  assert decode(honest, None, max_frames=40).num_frames == 40     # at the cap: fine
  with pytest.raises(ClipError) as e:
    decode(honest, None, max_frames=30)
  assert e.value.stage == "decode" and e.value.path == honest
  assert "too long: the container declares 40 frames (1.6 s at 25 fps)" in e.value.reason
  assert "cap of 30" in e.value.reason
  lying = _lying_avi(tmp_path)
  keep = lambda m: video.sample_indices(m, 4)
  assert decode(lying, None, keep, 4, max_frames=40).num_frames == 40
  with pytest.raises(ClipError) as e:
    decode(lying, None, keep, 4, max_frames=30)
  assert e.value.stage == "decode" and e.value.path == lying
  assert ("too long: more than the cap of 30 frames (max_video_frames): decoding stopped "
          "at frame 31; it declares 10") in e.value.reason


def test_the_length_cap_reaches_the_clip_record(tmp_path):
  from data_prep import annotations, clip_job, pipeline
  p = write_video(tmp_path / "clip.mp4", colour_frames(40))
  job = clip_job.ClipJob("test", annotations.Entry("long", "s/clip.mp4", "c"), p)
  out = clip_job.run_job(job, pipeline.PrepConfig(num_frames=4, max_video_frames=39))
  assert out.example is None and out.record["id"] == "long" and out.record["path"] == p
  assert out.record["stage"] == "decode"
  assert out.record["reason"].startswith("too long: the container declares 40 frames")
  assert pipeline.PrepConfig().max_video_frames == 5400


def test_one_decoder_thread_decodes_the_same(tmp_path, monkeypatch):
  p = write_video(tmp_path / "clip.mp4", np.random.default_rng(0).integers(
      0, 255, (12, 96, 128, 3), np.uint8))
  every = video.decode_video(p)
  monkeypatch.setattr(video, "DECODE_THREADS", 1)   # as pipeline.limit_threads(1) sets
  np.testing.assert_array_equal(video.decode_video(p).frames, every.frames)


def _thread_settings():
  return cv2.getNumThreads(), video.DECODE_THREADS


def _thread_settings_outcome(job):
  from data_prep import clip_job
  return clip_job.ClipOutcome({"id": job.entry.id, "threads": _thread_settings()})


def test_build_workers_start_with_their_share_of_the_threads():
  """data_prep.builder's worker pool (clip_pool.ClipPool runs clip_job.init_worker)."""
  from data_prep import annotations, clip_job, clip_pool
  job = clip_job.ClipJob("train", annotations.Entry("x", "s/x.mp4", "c"), "s/x.mp4")
  with clip_pool.ClipPool(_thread_settings_outcome, 1, threads=1) as pool:
    assert [o.record for o in pool.imap([job])] == [{"id": "x", "threads": (1, 1)}]
  assert video.DECODE_THREADS == 0   # this process keeps the defaults


def test_decode_max_side_shrinks(tmp_path):
  src = np.zeros((5, 240, 320, 3), np.uint8)
  src[:, :120] = 200
  v = video.decode_video(write_video(tmp_path / "big.mp4", src), max_side=160)
  assert v.frames.shape == (5, 120, 160, 3) and v.original_size == (240, 320)
  assert v.frames[:, :55].mean() > 180 and v.frames[:, 65:].mean() < 20


# ---------------------------------------------------------------- sampling

def test_sample_indices_uniform():
  idx = video.sample_indices(100, 8)
  np.testing.assert_array_equal(idx, [6, 18, 31, 43, 56, 68, 81, 93])
  np.testing.assert_array_equal(video.sample_indices(16, 8), [1, 3, 5, 7, 9, 11, 13, 15])
  np.testing.assert_array_equal(video.sample_indices(1, 8), np.zeros(8))   # a still: T copies
  short = video.sample_indices(5, 8)
  assert np.all(np.diff(short) >= 0) and set(short) == set(range(5))
  with pytest.raises(ValueError):
    video.sample_indices(0, 8)


def test_detection_indices_hold_the_samples():
  sampled = video.sample_indices(50, 8)
  det = video.detection_indices(50, sampled, stride=4)
  assert set(range(0, 50, 4)) <= set(det) and set(sampled) <= set(det) and 49 in det
  assert np.all(np.diff(det) > 0)
  # auto: 3x the output density (the largest odd factor that fits 48), evenly spread
  for n in (30, 75, 200):
    sampled = video.sample_indices(n, 8)
    det = video.detection_indices(n, sampled, max_frames=48)
    k = 5 if n >= 40 else 3
    assert len(det) == 8 * k and set(sampled) <= set(det), (n, det)
    gaps = np.diff(det)
    assert gaps.max() - gaps.min() <= 1
  short = video.sample_indices(16, 8)          # fewer than 3 per sample: just the samples
  np.testing.assert_array_equal(video.detection_indices(16, short), short)
  np.testing.assert_array_equal(video.detection_indices(10, video.sample_indices(10, 8), stride=1),
                                np.arange(10))


# -------------------------------------------------------------- bad inputs

def _bad_inputs(tmp_path):
  good = write_video(tmp_path / "good.mp4", colour_frames(30, 96, 128))
  data = open(good, "rb").read()
  fast = write_video(tmp_path / "fast.mp4", np.random.default_rng(0).integers(
      0, 255, (30, 96, 128, 3), np.uint8), options={"movflags": "faststart"})
  fast_data = open(fast, "rb").read()
  avi = write_video(tmp_path / "good.avi", colour_frames(30, 96, 128), codec="mjpeg")
  avi_data = open(avi, "rb").read()
  (tmp_path / "empty.mp4").write_bytes(b"")
  (tmp_path / "text.mp4").write_text("this is not a video\n" * 50)
  (tmp_path / "head_cut.mp4").write_bytes(data[:len(data) // 2])        # moov atom lost
  (tmp_path / "tail_cut.mp4").write_bytes(fast_data[:len(fast_data) // 2])  # stream cut
  (tmp_path / "tail_cut.avi").write_bytes(avi_data[:len(avi_data) // 2])
  (tmp_path / "a_dir.mp4").mkdir()
  with av.open(str(tmp_path / "audio.wav"), "w") as c:   # a media file without video
    s = c.add_stream("pcm_s16le", rate=8000)
    frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
    frame.sample_rate = 8000
    for pk in s.encode(frame):
      c.mux(pk)
    for pk in s.encode():
      c.mux(pk)
  return {
      "missing.mp4": ("open", "not found"),
      "empty.mp4": ("open", "0 bytes"),
      "a_dir.mp4": ("open", "directory"),
      "text.mp4": ("open", "not a video"),
      "head_cut.mp4": ("open", "truncated"),
      "tail_cut.mp4": ("decode", "truncated"),
      "tail_cut.avi": ("decode", "truncated"),
      "audio.wav": ("open", "no video stream"),
  }


def test_bad_inputs_raise_clip_error(tmp_path):
  for name, (stage, words) in _bad_inputs(tmp_path).items():
    path = str(tmp_path / name)
    with pytest.raises(ClipError) as e:
      video.decode_video(path)
    assert e.value.stage == stage, (name, e.value)
    assert words in e.value.reason and e.value.path == path, (name, e.value.reason)
