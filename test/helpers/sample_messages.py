"""One fully populated instance of each despite_ros message (non-default value in every field)."""
from __future__ import annotations


def sample_messages() -> dict[str, object]:
    from builtin_interfaces.msg import Time
    from geometry_msgs.msg import Point
    from std_msgs.msg import Header

    from despite_ros.msg import ActivityArray, Embedding, MatchArray, MatchScore, PersonActivity

    person = PersonActivity(
        track_id=7, wearer_id="person_2", position=Point(x=1.5, y=-2.25, z=0.75), label="wave", class_id=8,
        confidence=0.875, scores=[0.125, 0.875], window_start=Time(sec=1767225600, nanosec=100_000_000),
        window_duration=2.3)
    header = Header(stamp=Time(sec=1767225602, nanosec=400_000_000), frame_id="lidar")
    return {
        "PersonActivity": person,
        "ActivityArray": ActivityArray(header=header, model_id="despite-default-v1", source="lidar",
                                       people=[person, PersonActivity(track_id=9, label="walk", class_id=1)]),
        "Embedding": Embedding(header=header, modality="pointcloud", track_id=7, wearer_id="",
                               frame_stamps=[Time(sec=1, nanosec=k * 100_000_000) for k in range(3)],
                               data=[0.5, -0.5, 0.25, 0.125]),
        "MatchScore": MatchScore(wearer_id="person_1", track_id=3, similarity=0.625, probability=0.75, assigned=True),
        "MatchArray": MatchArray(header=header, wearer_ids=["person_1", "person_2"], track_ids=[3, 7, 9],
                                 similarity=[0.5, 0.25, -0.125, 0.0625, 0.75, 0.375],
                                 assignments=[MatchScore(wearer_id="person_1", track_id=3, similarity=0.5,
                                                         probability=0.6, assigned=True)]),
    }
