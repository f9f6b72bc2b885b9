"""A small RTSP server for the capture tests: a clip (or a test pattern) as live H.264, looped forever.

Runs under the system Python, which has GStreamer's bindings (python3-gi, gir1.2-gst-rtsp-server-1.0);
the project's venv does not. The clip is decoded once into memory and pushed through appsrc with
steady timestamps, so every client gets an endless stream that starts at once. Prints READY when
it listens; SIGTERM/SIGINT stop it, and tests SIGKILL it to simulate a camera dying.
"""

from __future__ import annotations

import argparse
import signal
import sys
from typing import Any

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer

ENCODERS = (  # first one installed wins; short GOPs so a (re)connecting client starts fast
    ("x264enc", "x264enc tune=zerolatency speed-preset=ultrafast key-int-max=10"),
    ("openh264enc", "openh264enc gop-size=10 complexity=low"),
)


def encoder() -> str:
    for name, launch in ENCODERS:
        if Gst.ElementFactory.find(name):
            return launch
    sys.exit("no H.264 encoder: install gstreamer1.0-plugins-ugly (x264enc) or -bad (openh264enc)")


def decode(path: str, width: int, height: int, limit: int) -> tuple[list[bytes], str, int]:
    """The first `limit` frames of a file as raw I420, their caps and the frame duration in ns."""
    pipe = Gst.parse_launch(
        "filesrc name=src ! decodebin ! videoconvert ! videoscale ! videorate ! "
        f"video/x-raw,format=I420,width={width},height={height} ! appsink name=sink sync=false")
    pipe.get_by_name("src").set_property("location", path)
    sink = pipe.get_by_name("sink")
    pipe.set_state(Gst.State.PLAYING)
    frames: list[bytes] = []
    caps = None
    while len(frames) < limit:
        sample = sink.emit("pull-sample")
        if sample is None:
            break
        caps = sample.get_caps()
        buf = sample.get_buffer()
        frames.append(buf.extract_dup(0, buf.get_size()))
    pipe.set_state(Gst.State.NULL)
    if not frames or caps is None:
        sys.exit(f"{path}: no frame could be decoded")
    ok, num, den = caps.get_structure(0).get_fraction("framerate")
    fps_num, fps_den = (num, den) if ok and num > 0 else (10, 1)
    caps_str = f"video/x-raw,format=I420,width={width},height={height},framerate={fps_num}/{fps_den}"
    return frames, caps_str, Gst.SECOND * fps_den // fps_num


class LoopedClip:
    """Feeds one client's appsrc with the decoded frames, round and round."""

    def __init__(self, frames: list[bytes], duration: int) -> None:
        self.frames, self.duration, self.n = frames, duration, 0

    def need_data(self, src: Any, _length: int) -> None:
        buf = Gst.Buffer.new_wrapped(self.frames[self.n % len(self.frames)])
        buf.pts = buf.dts = self.n * self.duration
        buf.duration = self.duration
        self.n += 1
        src.emit("push-buffer", buf)


def factory_for(args: argparse.Namespace) -> GstRtspServer.RTSPMediaFactory:
    factory = GstRtspServer.RTSPMediaFactory()
    tail = f"videoconvert ! {encoder()} ! rtph264pay name=pay0 pt=96 config-interval=1"
    if args.file is None:
        factory.set_launch(
            f"( videotestsrc is-live=true pattern=ball ! video/x-raw,width={args.width},"
            f"height={args.height},framerate=10/1 ! {tail} )")
        return factory
    frames, caps, duration = decode(args.file, args.width, args.height, args.frames)
    factory.set_launch(f"( appsrc name=src is-live=true block=true format=time caps=\"{caps}\" ! {tail} )")

    def configure(_factory: Any, media: Any) -> None:
        src = media.get_element().get_child_by_name("src")
        src.connect("need-data", LoopedClip(frames, duration).need_data)

    factory.connect("media-configure", configure)
    return factory


def require_basic_auth(server: Any, factory: Any, user: str, password: str) -> None:
    """Only USER:PASSWORD may describe and play the stream (a camera with an account)."""
    auth = GstRtspServer.RTSPAuth()
    token = GstRtspServer.RTSPToken()
    token.set_string(GstRtspServer.RTSP_TOKEN_MEDIA_FACTORY_ROLE, "viewer")
    auth.add_basic(GstRtspServer.RTSPAuth.make_basic(user, password), token)
    server.set_auth(auth)
    permissions = GstRtspServer.RTSPPermissions()
    for permission in (GstRtspServer.RTSP_PERM_MEDIA_FACTORY_ACCESS,
                       GstRtspServer.RTSP_PERM_MEDIA_FACTORY_CONSTRUCT):
        permissions.add_permission_for_role("viewer", permission, True)
    factory.set_permissions(permissions)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--mount", default="/test")
    parser.add_argument("--file", help="video to serve; default: a live test pattern")
    parser.add_argument("--width", type=int, default=384)
    parser.add_argument("--height", type=int, default=288)
    parser.add_argument("--frames", type=int, default=100, help="frames of the file to loop")
    parser.add_argument("--auth", help="USER:PASSWORD: require HTTP Basic authentication")
    args = parser.parse_args()
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    factory = factory_for(args)
    if args.auth:
        require_basic_auth(server, factory, *args.auth.split(":", 1))
    server.get_mount_points().add_factory(args.mount, factory)
    if server.attach(None) == 0:
        sys.exit(f"cannot listen on 127.0.0.1:{args.port}")
    loop = GLib.MainLoop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, sig, loop.quit)
    print("READY", flush=True)
    loop.run()


if __name__ == "__main__":
    main()
