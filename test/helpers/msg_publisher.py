"""Test helper process: publishes each sample despite_ros message on /despite_test/<Type> at 10 Hz
until terminated (the test bounds and ends it)."""
import rclpy
from rclpy.qos import QoSProfile, ReliabilityPolicy

from helpers.sample_messages import sample_messages


def main() -> None:
    rclpy.init()
    node = rclpy.create_node("despite_msg_publisher")
    msgs = sample_messages()
    qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    pubs = {name: node.create_publisher(type(m), f"/despite_test/{name}", qos) for name, m in msgs.items()}
    node.create_timer(0.1, lambda: [pubs[n].publish(m) for n, m in msgs.items()])
    try:
        rclpy.spin(node)
    except KeyboardInterrupt:
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    main()
