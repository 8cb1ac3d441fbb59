"""The live dashboard: an admin page per study, or per set of studies, on the study server.

It shows progress (allocated, submitted, confirmed, flagged, over time), the current Table 2
with annotator-bootstrap intervals, the psychometric plot, catch accuracy per annotator and
the latest refusals from the audit (docs/dashboard.md).

It lives in `analysis` because Table 2 and the figures are the analysis' (the layout forbids
`study_server` to import `analysis`): `analysis.dashboard.app:create_app` builds the study
server's app and mounts the dashboard on it, and that is what the deployment serves
(`study-server serve --app analysis.dashboard.app:create_app`).

    session    signing in with the admin token: the form, the signed session cookie, the throttle
    progress   the cheap queries of every refresh: progress, the course over time, refusals
    results    the analysis (Table 2, figure, catch per annotator) and its cache
    chart      the progress chart as inline SVG
    routes     the pages and the panels' partial
    app        create_app / install
"""
