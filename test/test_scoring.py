"""The fixed scoring rules (shared/ARCHITECTURE.md) as implemented once in despite_core.runtime.scoring."""
import pytest

from despite_core.runtime.scoring import Scoreboard, track_person


def test_track_person_needs_a_majority_of_the_points():
    assert track_person([{1: 30, 0: 10}, {1: 20, 2: 5}]) == 1
    assert track_person([{1: 10, 2: 10}, {0: 5}]) == 0            # no person holds more than half
    assert track_person([{0: 40, 1: 30}]) == 0                    # mostly background
    assert track_person([None, {}]) == 0


def test_scoreboard_counts_ambiguous_unassociated_and_scores_the_rest():
    b = Scoreboard(["a", "b", "c"])
    assert b.add_window(1, [0] * 24, 0) == "correct"
    assert b.add_window(1, [1] * 13 + [2] * 11, 2) == "wrong"
    assert b.add_window(1, [1] * 11 + [2] * 11 + [0] * 2, 1) == "ambiguous"   # majority < half
    assert b.add_window(0, [0] * 24, 0) == "unassociated"
    assert b.add_window(2, [2] * 24, 65535) == "wrong"             # a label outside the classes
    b.add_match("person_1", 1, 1)
    b.add_match("person_2", 2, 1)
    s = b.summary()
    assert s["windows"] == 3 and s["ambiguous"] == 1 and s["unassociated"] == 1
    assert s["accuracy"] == 1 / 3 and s["confusion"][1][2] == 1 and s["confusion"][2][0] == 1
    assert s["matching_accuracy"] == {"overall": 0.5, "person_1": 1.0, "person_2": 0.0}


def test_live_vs_truth_on_hand_made_windows():
    from despite_core.runtime.scoring import live_vs_truth

    s = 10**9
    # person 1: 4 truth windows at 1-4 s, 12 m away; person 2: 2 windows at 1-2 s, 3 m away
    truth = {(k * s, 1): (3, 12.0) for k in (1, 2, 3, 4)} | {(k * s, 2): (5, 3.0) for k in (1, 2)}

    def rec(stamp, track, person, predicted):
        return {"stamp": stamp * s, "track": track, "person": person, "predicted": predicted}

    live = [rec(1, 7, 1, 3), rec(2, 7, 1, 4),            # person 1 on track 7: right, then wrong
            rec(3, 9, 1, 3),                              # then on track 9: one id switch, right
            rec(1, 8, 2, 5),                              # person 2 found once, right; missed at 2 s
            rec(1, 11, 0, 0), rec(2, 11, 0, 0), rec(3, 11, 2, 0)]   # a track mostly on background
    m = live_vs_truth(truth, live, seconds=120.0)
    assert m["truth_windows"] == 6
    assert m["coverage"] == pytest.approx(4 / 6, abs=1e-4)        # (1,1) (2,1) (3,1) (1,2); (4,1) and (2,2) missed
    assert m["recall"] == pytest.approx(3 / 6, abs=1e-4)          # (2,1) was labelled wrong
    assert m["false_tracks"] == 1 and m["false_tracks_per_minute"] == pytest.approx(0.5)
    # person 1: 7 -> 9 is one switch; person 2: 8 then 11 is another
    assert m["id_switches"] == 2 and m["id_switches_per_person_minute"] == pytest.approx(2 / (2 * 2.0))
    assert m["coverage_per_person"] == {"1": 0.75, "2": 0.5}
    assert m["coverage_per_distance"] == {"0-5 m": 0.5, "10-15 m": 0.75}
    # a person with two tracks at once keeps the one it had: no switch counted back and forth
    both = [rec(1, 7, 1, 3), rec(2, 7, 1, 3), rec(2, 9, 1, 3), rec(3, 7, 1, 3), rec(3, 9, 1, 3)]
    assert live_vs_truth(truth, both, 60.0)["id_switches"] == 0
    assert live_vs_truth({}, [], 60.0)["coverage"] is None
