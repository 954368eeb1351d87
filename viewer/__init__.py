"""The browser viewer, built on viser: `fieldkit view` and the live view of running jobs.

fieldkit renders, viser shows: splats (`fieldkit.gaussians.Splats`) and meshes (`trimesh.Trimesh`)
are sent to the browser, which draws them itself; any other `fieldkit.renderable.Renderable`
(fields, ...) is rendered on the server and streamed with depth. The server answers only its own
page (serving.py). Import `fieldkit.viewer.live.LiveView` to show a running job.
"""

DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 8080  # this machine only, unless --host says otherwise
