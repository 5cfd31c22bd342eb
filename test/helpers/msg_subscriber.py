"""Test helper process: receives one of each despite_ros message and writes its serialised bytes
to OUT_DIR/<Type>.cdr; exits 0 when all arrived, 1 (naming the missing ones) after TIMEOUT s."""
import sys
import time
from pathlib import Path

import rclpy
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rclpy.serialization import serialize_message

from helpers.sample_messages import sample_messages


def main() -> int:
    out, timeout = Path(sys.argv[1]), float(sys.argv[2])
    rclpy.init()
    node = rclpy.create_node("despite_msg_subscriber")
    got: dict[str, bytes] = {}
    qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    for name, m in sample_messages().items():
        node.create_subscription(type(m), f"/despite_test/{name}",
                                 lambda msg, n=name: got.setdefault(n, serialize_message(msg)), qos)
    deadline = time.monotonic() + timeout
    try:
        while len(got) < 5 and time.monotonic() < deadline:
            rclpy.spin_once(node, timeout_sec=0.1)
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    out.mkdir(parents=True, exist_ok=True)
    for name, data in got.items():
        (out / f"{name}.cdr").write_bytes(data)
    missing = sorted(set(sample_messages()) - set(got))
    if missing:
        print(f"missing: {missing}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
