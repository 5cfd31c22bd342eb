"""`despite-ros bag-eval`: score the live pipeline on a recorded rosbag2 bag (MCAP or sqlite3,
read with rosbags: no ROS install needed), with the same runtime, buffers and scoring as the nodes.

Modes:
- ``offline``: in-process and deterministic, as fast as possible: the bag's scans go through
  HarPipeline, its IMU through WearerMatcher, in bag order.
- ``replay``: the bag's scans and IMU are published onto DDS at their recorded timing (times
  ``--rate``) for har_node and matching_node started with bringup; their outputs are recorded and
  scored, and latency is measured from each scan's publication to the ActivityArray ending with it.

Segmentation (offline): ``live`` runs perception and tracking; ``ground-truth`` cuts each person's
points by the cloud's ``gt_person`` field (track id = person id), so the gap between the two is
the cost of perception and tracking.

Ground truth: the bag's ``/ground_truth/activities`` (ActivityArray, as `despite synth` writes)
or a sidecar file of labelled segments (docs/bag-eval.md): CSV with a header
``start,end,label[,person]`` or JSON ``[{"start":..., "end":..., "label":..., "person":...}]``;
times in seconds since the epoch (the messages' header stamps), ``person`` a ground-truth person id or ``person_<k>`` (empty: every
person). Each window is scored by the fixed rules of despite_core.runtime.scoring.

The package's parts: :mod:`.common` (what both modes check and prepare), :mod:`.offline`,
:mod:`.replay` (needs rclpy) and :mod:`.report` (results.json, windows.csv, plots, HTML). Reading
the bag is :mod:`despite_core.data.rosbag`.
"""
from despite_core.data.rosbag import GT_TOPIC, imu_pattern
from despite_ros.bag_eval.common import BagEvalError
from despite_ros.bag_eval.offline import evaluate_offline
from despite_ros.bag_eval.report import RESULT_KEYS, write_results


def evaluate_replay(*args, **kwargs) -> dict:
    """Replay mode (:func:`despite_ros.bag_eval.replay.evaluate_replay`); imported on use: it needs rclpy."""
    from despite_ros.bag_eval.replay import evaluate_replay as replay

    return replay(*args, **kwargs)


__all__ = ["GT_TOPIC", "BagEvalError", "RESULT_KEYS", "evaluate_offline", "evaluate_replay", "imu_pattern",
           "write_results"]
