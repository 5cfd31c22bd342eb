"""Temporal fusion (despite_core.runtime.fusion) on hand-made score sequences, and the segment and
alert scoring rules (despite_core.runtime.scoring) on hand-made segments."""
from __future__ import annotations

import numpy as np
import pytest

from despite_core.runtime.fusion import ActivityFusion, FusionConfig
from despite_core.runtime.scoring import (NS, GroundTruth, Segment, alert_metrics, match_segments,
                                          predicted_segments, segment_metrics, true_segments)

# the default bundle's 15 classes (the latency below depends on how many labels share the rest)
LABELS = ["stand", "walk", "sit down", "sitting", "wave", "run", "jump", "squat", "stand up", "clap", "punch",
          "kick", "bend to pick up", "turn in place", "jumping jacks"]
PERIOD = NS // 10
STRIDE = 3 * PERIOD                       # an inference every 3 frames (0.3 s), as har_node


def window(i: int) -> np.ndarray:
    """Scan stamps of the i-th window: 24 frames, one stride (0.3 s) after the previous window."""
    return (np.arange(24) * PERIOD + i * STRIDE).astype(np.int64)


def scores(k: int, p: float = 0.6) -> np.ndarray:
    s = np.full(len(LABELS), (1 - p) / (len(LABELS) - 1))
    s[k] = p
    return s


def run(seq, fusion=None, p=0.6, tid=1, body=None):
    """Feed one track's windows with the labels ``seq``; returns fused labels and every event.
    ``body(stamps) -> (centroids (T, 3), extents (T, 2))``: the windows' raw geometry (none: not passed)."""
    fusion = fusion or ActivityFusion(LABELS)
    labels, events = [], []
    for i, k in enumerate(seq):
        st = window(i)
        sc = scores(k, p[i] if isinstance(p, list) else p)
        fused, ev = fusion.update(int(st[-1]), [(tid, st, sc, *body(st)) if body else (tid, st, sc)])
        labels.append(fused[0].label)
        events += ev
    return labels, events, fusion


# The latency the README states (default settings, 15 labels, windows 0.3 s apart): after a clean
# change, from the first window of the new activity, the fused label follows within 2 windows
# (0.6 s) when the windows give the new label 0.4 (the rest spread evenly), within 1 from 0.6.
LATENCY_WINDOWS = {0.4: 2, 0.6: 1, 0.8: 1}


@pytest.mark.parametrize("p", sorted(LATENCY_WINDOWS))
def test_clean_change_is_followed_within_the_stated_latency(p):
    labels, events, _ = run([0] * 15 + [1] * 15, p=p)
    first = labels.index("walk")
    assert 15 <= first <= 15 + LATENCY_WINDOWS[p]
    assert labels[first:] == ["walk"] * (30 - first)          # and stays
    starts = [e for e in events if e.ongoing]
    ends = [e for e in events if not e.ongoing]
    assert [e.label for e in starts] == ["stand", "walk"]
    assert [e.label for e in ends] == ["stand"]
    # the walk segment is dated back to the centre of the first walk window, where stand ends
    centre = int((window(15)[0] + window(15)[-1]) // 2)
    assert starts[1].start_ns == centre == ends[0].end_ns
    assert starts[0].start_ns == window(0)[0]
    assert starts[1].stamp_ns == window(first)[-1]           # known when that window arrived


def test_one_window_blip_creates_no_event():
    labels, events, _ = run([0] * 10 + [4] + [0] * 10, p=[0.6] * 10 + [0.95] + [0.6] * 10)
    assert set(labels) == {"stand"}
    assert len(events) == 1 and events[0].ongoing and events[0].label == "stand"


def test_raw_labels_flicker_but_fused_do_not():
    rng = np.random.default_rng(0)
    seq = [0] * 40
    noisy = [int(rng.integers(1, 5)) if rng.random() < 0.3 else 0 for _ in seq]   # 30 % wrong windows
    labels, events, _ = run(noisy, p=0.5)
    assert sum(a != b for a, b in zip(noisy, noisy[1:])) > 10
    assert labels[3:] == ["stand"] * 37                     # a new track's first windows have no history yet
    assert all(e.stamp_ns <= window(3)[-1] for e in events)


def test_confidence_is_the_posterior_and_rises_with_agreement():
    fusion = ActivityFusion(LABELS)
    confs = []
    for i in range(6):
        st = window(i)
        fused, _ = fusion.update(int(st[-1]), [(1, st, scores(1, 0.5))])
        confs.append(fused[0].confidence)
    assert confs[0] == pytest.approx(scores(1, 0.5)[1] ** 0.8 / (scores(1, 0.5) ** 0.8).sum())
    assert all(b > a for a, b in zip(confs, confs[1:4]))
    assert 0 < confs[-1] < 1


def test_tracks_are_independent_and_end_when_lost_or_silent():
    fusion = ActivityFusion(LABELS, config=FusionConfig(max_silence_s=1.0))
    for i in range(5):
        st = window(i)
        fusion.update(int(st[-1]), [(1, st, scores(0)), (2, st, scores(1))])
    ended = fusion.end(2)
    assert [(e.track_id, e.label, e.ongoing, e.end_ns) for e in ended] == [(2, "walk", False, int(window(4)[-1]))]
    assert fusion.end(2) == []
    # track 1 silent for more than 1 s: the next batch (of another track) ends its segment
    st = window(10)
    _, events = fusion.update(int(st[-1]), [(3, st, scores(2))])
    assert [(e.track_id, e.ongoing) for e in events] == [(1, False), (3, True)]
    assert fusion.flush()[0].track_id == 3 and fusion.tracks == {}


def test_alert_on_the_sequence_only():
    # a sequence that is not a fall: no body-down check, no geometry needed
    cfg = FusionConfig(alert_sequence=("sit down", "sitting"), alert_within_s=3.0, alert_min_drop_m=0)
    _, events, fusion = run([0] * 8 + [2] * 8 + [3] * 10, ActivityFusion(LABELS, config=cfg))
    alerts = [e for e in events if e.alert]
    assert [(e.label, e.ongoing) for e in alerts] == [("sitting", True)]
    assert fusion.active_alerts() == [1] and fusion.alerts == 1
    # sitting reached from walk (no sit down before it): no alert
    _, events, fusion = run([1] * 8 + [3] * 10, ActivityFusion(LABELS, config=cfg))
    assert not any(e.alert for e in events) and fusion.active_alerts() == []
    # sit down long before (more than alert_within_s): no alert
    _, events, _ = run([2] * 8 + [4] * 20 + [3] * 10, ActivityFusion(LABELS, config=cfg))
    assert not any(e.alert for e in events)
    # a short interruption between the two still alerts
    _, events, _ = run([2] * 8 + [4] * 4 + [3] * 10, ActivityFusion(LABELS, config=cfg), p=0.9)
    assert any(e.alert and e.label == "sitting" for e in events)
    # the default sequence (fall, lying) is not in these labels: alerts are off
    assert not ActivityFusion(LABELS).alerts_enabled


# ---- fall alerts: the body-down check (the default sequence, fall then lying)

FALL_LABELS = LABELS + ["fall", "lying", "get up"]
STAND, FALL, LYING, GET_UP = 0, 15, 16, 17


def fall_scores(k: int, p: float = 0.6) -> np.ndarray:
    s = np.full(len(FALL_LABELS), (1 - p) / (len(FALL_LABELS) - 1))
    s[k] = p
    return s


def body(drop_at_s: float | None, hidden_after_s: float | None = None, standing=(1.0, 1.7, 0.5),
         down=(0.15, 0.3, 1.6)):
    """Geometry of a person: standing (centroid z, height extent, horizontal extent) until
    ``drop_at_s`` (None: never), then down; no points from ``hidden_after_s`` on (fallen out of view)."""
    def geometry(stamps):
        t = stamps / NS
        is_down = np.zeros(len(t), bool) if drop_at_s is None else t >= drop_at_s
        z, h, length = (np.where(is_down, d, u) for d, u in zip(down, standing))
        cen = np.stack([np.full(len(t), 4.0), np.zeros(len(t)), z], 1)
        ext = np.stack([h, length], 1)
        if hidden_after_s is not None:
            ext[t >= hidden_after_s] = np.nan
            cen[t >= hidden_after_s] = 0.0                    # as ground-truth segmentation's empty frames
        return cen, ext
    return geometry


def run_fall(seq, geometry, cfg=None, p=0.6):
    fusion = ActivityFusion(FALL_LABELS, config=cfg or FusionConfig())
    events = []
    for i, k in enumerate(seq):
        st = window(i)
        _, ev = fusion.update(int(st[-1]), [(1, st, fall_scores(k, p), *geometry(st))])
        events += ev
    return events, fusion


# windows 0.3 s apart ending at 2.3 s + 0.3 i: stand for 10 (to 5.0 s), fall for 8 (to 7.4 s), then lying
FALL_SEQ = [STAND] * 10 + [FALL] * 8 + [LYING] * 12
FALL_AT = 5.0                                   # s: where the body goes down (the fall's windows)


def test_fall_alert_needs_the_body_to_go_down():
    events, fusion = run_fall(FALL_SEQ, body(FALL_AT))
    alerts = [e for e in events if e.alert and e.ongoing]
    assert len(alerts) == 1 and fusion.alerts == 1 and fusion.active_alerts() == [1]
    # the same scores from a body that stays upright (a misread squat or bend): no alert
    events, fusion = run_fall(FALL_SEQ, body(None))
    assert not any(e.alert for e in events) and fusion.alerts == 0
    # ... or one that only goes a little lower (sitting: 0.3 m down, 1.2 m tall)
    events, _ = run_fall(FALL_SEQ, body(FALL_AT, down=(0.7, 1.2, 0.6)))
    assert not any(e.alert for e in events)
    # the check off: the scores alone raise it
    events, _ = run_fall(FALL_SEQ, body(None), FusionConfig(alert_min_drop_m=0))
    assert sum(e.alert and e.ongoing for e in events) == 1


def test_fall_alert_comes_from_the_body_down_before_the_fused_lying():
    events, _ = run_fall(FALL_SEQ, body(FALL_AT))
    alert = next(e for e in events if e.alert and e.ongoing)
    lying = next(e for e in events if e.ongoing and e.label == "lying")
    # raised during the fused fall, once the body was down for alert_down_s (1 s), as a repeat of
    # the fall segment's start (not a new segment for the events topic)
    assert alert.label == "fall" and alert.repeat and alert.stamp_ns < lying.stamp_ns
    first_down = next(int(window(i)[-1]) for i in range(30) if window(i)[-1] / NS >= FALL_AT)
    assert alert.stamp_ns - first_down >= FusionConfig().alert_down_s * NS
    assert alert.stamp_ns - first_down <= FusionConfig().alert_down_s * NS + STRIDE
    assert not lying.alert                                  # one alert per fall: lying does not raise another
    # without the early path, the alert waits for the fused lying segment and flags its start
    events, _ = run_fall(FALL_SEQ, body(FALL_AT), FusionConfig(alert_down_s=0))
    alerts = [e for e in events if e.alert and e.ongoing]
    assert [(a.label, a.repeat) for a in alerts] == [("lying", False)] and alerts[0].stamp_ns == lying.stamp_ns


def test_fall_alert_early_path_needs_a_body_along_the_floor():
    # low and short: a person whose upper body is hidden (a few low returns) while a fall is fused;
    # the early path is not taken, the alert waits for the fused lying segment
    events, _ = run_fall(FALL_SEQ, body(FALL_AT, down=(0.15, 0.3, 0.4)))
    lying = next(e for e in events if e.ongoing and e.label == "lying")
    alerts = [e for e in events if e.alert and e.ongoing]
    assert [(a.label, a.repeat) for a in alerts] == [("lying", False)] and alerts[0].stamp_ns == lying.stamp_ns
    # the same with the length check off (0 m) takes it, during the fused fall
    events, _ = run_fall(FALL_SEQ, body(FALL_AT, down=(0.15, 0.3, 0.4)), FusionConfig(alert_min_length_m=0))
    assert [e.label for e in events if e.alert and e.ongoing] == ["fall"]


def test_fall_alert_when_the_person_falls_out_of_view():
    # seen going down for 0.3 s, then hidden (behind a bed): the last frames that saw them count
    events, _ = run_fall(FALL_SEQ, body(FALL_AT, hidden_after_s=FALL_AT + 0.3))
    assert sum(e.alert and e.ongoing for e in events) == 1
    # hidden before going down: nothing seen goes down, no alert
    events, _ = run_fall(FALL_SEQ, body(None, hidden_after_s=FALL_AT - 0.5))
    assert not any(e.alert for e in events)


def test_fall_alert_lasts_until_the_track_leaves_the_sequence():
    events, fusion = run_fall(FALL_SEQ + [GET_UP] * 10 + [STAND] * 5, body(FALL_AT))
    assert fusion.active_alerts() == [] and fusion.alerts == 1
    ended = {e.label: e.alert for e in events if not e.ongoing}
    assert ended["fall"] and ended["lying"] and not ended["get up"]     # the segments of the active alert


def _lost_and_taken_up_again(before: list[int], gap_s: float, after: int = 10):
    """Track 1's windows ``before``; then perception loses the track (the pipeline ends it) and takes
    it up again with the same id ``gap_s`` later, lying on the floor: its buffer starts anew, so the
    first window after is 24 fresh frames. Returns the events after the loss, and the fusion."""
    fusion = ActivityFusion(FALL_LABELS)
    geometry = body(FALL_AT)
    for i, k in enumerate(before):
        st = window(i)
        fusion.update(int(st[-1]), [(1, st, fall_scores(k), *geometry(st))])
    fusion.end(1)
    back = int(window(len(before) - 1)[-1]) + int(gap_s * NS)
    events = []
    for i in range(after):
        st = (back + np.arange(24) * PERIOD + i * STRIDE).astype(np.int64)
        events += fusion.update(int(st[-1]), [(1, st, fall_scores(LYING), *geometry(st))])[1]
    return events, fusion


def test_fall_alert_when_the_track_is_lost_while_falling_and_taken_up_again_lying():
    # lost after 3 fall windows (the body down for 0.3 s, not yet alert_down_s), back 0.5 s later lying:
    # the same id continues its segment history and body frames, so fall then lying raises the alert
    events, fusion = _lost_and_taken_up_again([STAND] * 10 + [FALL] * 3, gap_s=0.5)
    assert [(e.label, e.repeat) for e in events if e.alert and e.ongoing] == [("lying", False)]
    assert fusion.alerts == 1
    # back only after the body-down lookback (6 s): a new start, no alert (nothing seen fall)
    events, fusion = _lost_and_taken_up_again([STAND] * 10 + [FALL] * 3, gap_s=7.0)
    assert not any(e.alert for e in events) and fusion.alerts == 0
    # an alert raised before the loss is not raised again for the same fall
    events, fusion = _lost_and_taken_up_again(FALL_SEQ, gap_s=0.5)
    assert fusion.alerts == 1 and not any(e.alert and e.ongoing for e in events)
    assert fusion.active_alerts() == [1]                    # still lying: the alert stays active


def test_fall_alert_needs_the_geometry_while_the_check_is_on():
    fusion = ActivityFusion(FALL_LABELS)
    with pytest.raises(ValueError, match="centroids and extents"):
        fusion.update(int(window(0)[-1]), [(1, window(0), fall_scores(STAND))])
    # labels without the sequence's classes: no alerts, nothing needed
    assert ActivityFusion(LABELS).update(int(window(0)[-1]), [(1, window(0), scores(0))])[0][0].label == "stand"


def test_config_is_validated():
    with pytest.raises(ValueError, match="switch_rate"):
        FusionConfig(switch_rate=0)
    with pytest.raises(ValueError, match="sharpness"):
        FusionConfig(sharpness=0)
    for name in FusionConfig.ALERT_PARAMS:
        with pytest.raises(ValueError, match=name):
            FusionConfig(**{name: -1.0})
    with pytest.raises(ValueError, match="shape"):
        ActivityFusion(LABELS).update(0, [(1, window(0), np.ones(3) / 3)])


# ---- scoring rules on hand-made segments


def seg(person, label, a, b, track=0, emitted=0):
    return Segment(person, label, int(a * NS), int(b * NS), track, int(emitted * NS))


def test_segments_match_by_label_person_and_half_the_shorter():
    true = [seg(1, 0, 0, 10), seg(1, 1, 10, 14), seg(2, 0, 0, 14)]
    pred = [seg(1, 0, 1, 10.5, emitted=2.5),     # overlaps stand of person 1
            seg(1, 1, 12.1, 14, emitted=13),      # overlap 1.9 of the shorter 1.9: match
            seg(2, 1, 0, 14),                     # wrong label
            seg(1, 0, 9, 12)]                     # overlap 1 of 3 with stand: below half, and stand is taken
    pairs = match_segments(true, pred)
    assert pairs == [(0, 0), (1, 1)]
    m = segment_metrics(true, pred, LABELS)
    assert m["segment_precision"] == 0.5 and m["segment_recall"] == pytest.approx(2 / 3, abs=1e-4)
    assert m["segment_f1"] == pytest.approx(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3), abs=1e-4)
    assert m["event_delay_s_median"] == pytest.approx(2.75)     # (2.5 - 0) and (13 - 10)
    # just below half of the shorter: no match
    assert match_segments([seg(1, 0, 0, 4)], [seg(1, 0, 2.01, 6)]) == []
    assert match_segments([seg(1, 0, 0, 4)], [seg(1, 0, 2.0, 6)]) == [(0, 0)]
    # one to one: two predicted fragments of one true segment give one match
    assert len(match_segments([seg(1, 0, 0, 10)], [seg(1, 0, 0, 5), seg(1, 0, 5, 10)])) == 1
    # a label-file segment without a person matches any track's person
    assert match_segments([seg(None, 0, 0, 4)], [seg(7, 0, 0, 4)]) == [(0, 0)]


def test_true_segments_from_label_messages():
    gt = GroundTruth(LABELS)
    stamps = [int(i * PERIOD) for i in range(30)]
    gt.by_stamp[1] = {s: (0 if i < 10 else 1 if i < 20 else -1) for i, s in enumerate(stamps)}
    gt.by_stamp[2] = {s: 3 for s in stamps[:5] + stamps[20:]}       # a 1.5 s gap splits the run
    segs = true_segments(gt)
    assert [(s.person, s.label, s.start, s.end) for s in segs] == [
        (1, 0, 0, 10 * PERIOD), (1, 1, 10 * PERIOD, 20 * PERIOD),
        (2, 3, 0, 5 * PERIOD), (2, 3, 20 * PERIOD, 30 * PERIOD)]


def test_predicted_segments_take_the_windows_majority_person():
    from despite_core.runtime.fusion import ActivityEvent

    events = [ActivityEvent(5, "walk", 1, 0.8, 0, 0, True, 2 * NS),
              ActivityEvent(5, "walk", 1, 0.8, 0, 6 * NS, False, 6 * NS)]
    records = [{"track": 5, "stamp": s * NS, "person": p} for s, p in [(1, 2), (2, 2), (3, 0), (4, 2), (7, 1)]]
    segs = predicted_segments(events, records)
    assert [(s.person, s.label, s.start, s.end, s.emitted) for s in segs] == [(2, 1, 0, 6 * NS, 2 * NS)]


def test_alert_metrics():
    true = [seg(1, 0, 0, 10), seg(1, 2, 10, 12), seg(1, 3, 12, 20), seg(2, 3, 0, 20)]
    sequence = [2, 3]
    m = alert_metrics(true, [(1, int(13.5 * NS)), (1, int(14 * NS)), (2, int(5 * NS))], sequence, hours=0.5)
    assert m["instances"] == 1 and m["alert_recall"] == 1.0
    assert m["false_alarms"] == 1 and m["false_alarms_per_hour"] == 2.0        # person 2 sat without sitting down
    assert m["alert_delay_s_median"] == pytest.approx(3.5)
    assert alert_metrics(true, [], sequence, 0.5)["alert_recall"] == 0.0
