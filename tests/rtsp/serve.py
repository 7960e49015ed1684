"""An RTSP camera for the tests: GStreamer's RTSP server sends an H.264 file (encoded once, never again here) to
every reader of rtsp://127.0.0.1:PORT/cam, optionally behind basic authentication. Prints "ready PORT" when it serves.

Run with the system Python (python3-gi, gir1.2-gst-rtsp-server-1.0):
serve.py FILE [--codec h264|h265] [--port N] [--user U --password P]
"""

import argparse
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("file")
    p.add_argument("--codec", choices=["h264", "h265"], default="h264")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--user")
    p.add_argument("--password")
    a = p.parse_args()
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(a.port))
    factory = GstRtspServer.RTSPMediaFactory()
    # The file as it is: no decoding or encoding here, so a 2-core machine can afford it.
    factory.set_launch(
        f'( filesrc location="{a.file}" ! qtdemux ! {a.codec}parse config-interval=-1 ! rtp{a.codec}pay name=pay0 pt=96 )'
    )
    factory.set_shared(True)
    if a.user:
        auth = GstRtspServer.RTSPAuth()
        token = GstRtspServer.RTSPToken()
        token.set_string(GstRtspServer.RTSP_TOKEN_MEDIA_FACTORY_ROLE, "viewer")
        auth.add_basic(GstRtspServer.RTSPAuth.make_basic(a.user, a.password), token)
        server.set_auth(auth)
        permissions = GstRtspServer.RTSPPermissions()
        permissions.add_role("viewer")
        permissions.add_permission_for_role(
            "viewer", GstRtspServer.RTSP_PERM_MEDIA_FACTORY_ACCESS, True
        )
        permissions.add_permission_for_role(
            "viewer", GstRtspServer.RTSP_PERM_MEDIA_FACTORY_CONSTRUCT, True
        )
        factory.set_permissions(permissions)
    server.get_mount_points().add_factory("/cam", factory)
    server.attach(None)
    print(f"ready {server.get_bound_port()}", flush=True)
    GLib.MainLoop().run()


if __name__ == "__main__":
    sys.exit(main())
