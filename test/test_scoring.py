"""The fixed scoring rules (shared/ARCHITECTURE.md) as implemented once in despite_core.runtime.scoring."""
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
