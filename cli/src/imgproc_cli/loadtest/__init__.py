"""`imgproc loadtest`: how much the stack can take, what each image costs, and where time goes.

It keeps `--concurrency` images in flight (each uploader sends its next image once its previous
one is terminal), waits until all `--images` are terminal, then reports throughput, latency from
upload to terminal status, time per stage and between stages, lost images and duplicate
executions (both must be 0), AWS API calls and state transitions per image, and an estimated
AWS cost per 1,000 images at list prices, for the tagger backend the stack runs (`imgproc up
--tagger`, or a deployed stack's `TaggerBackend` parameter through `--stack`).

It learns that an image is terminal from the workflow's own announcements on the `stored` topic,
through a queue of its own subscribed for the run (deleted at the end): polling every image's
record would load the endpoint it measures (at 2 polls a second, a tenth of its CPU). Where it
cannot subscribe, it polls the records instead.

Against the local stack the API calls are counted by the embedded endpoint itself
(`/_imgproc/stats`, see `imgproc_local.request_counter`) and the workers' CPU time is read from
/proc for the services `imgproc up` started; against AWS both come from a model of one image
(its calls, and each worker's CPU seconds with the tagger's backend).

The modules, in the order a run uses them: `photos` (what is uploaded), `runner` (the run and
its measurements), `listener` (the announcements it waits on), `progress` (the bar), `cpu` (the
local services' CPU from /proc), `costs` (prices and the model of one image), `report` (the
statistics and the summary), `command` (the CLI command).
"""

from imgproc_cli.loadtest.command import register, run

__all__ = ["register", "run"]
