"""The stack's AWS on one machine, for `imgproc up` and the tests.

An embedded moto endpoint (`embedded_aws`) with the stack's resources and identities
(`bootstrap`, `local_cognito`); moto made to answer as AWS does where the pipeline depends on it
(`moto_fixes`, `moto_iam`, `s3_post_policy`; always on), fast enough to load-test
(`moto_speedups`; off with `IMGPROC_MOTO_SPEEDUPS=0`) and counting what it serves
(`request_counter`), every patch's moto names declared in `moto_patches`; the services run as
supervised, scaled processes (`supervisor`, `scaler`); data kept across restarts
(`persistence`); and the launcher itself (`up`, which writes the `local_stack` record the
commands find it by). The commands (`imgproc_cli`) import this package; it never imports them.
"""
