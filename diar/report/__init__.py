"""Looking at a diarization: timeline pictures of one recording and a report page for a job.

* :mod:`diar.report.timeline`: what a timeline shows, independent of how it is drawn: one
  lane per speaker, overlapped speech, and with a reference its lanes and the missed speech,
  false alarm and speaker confusion that :mod:`diar.scoring` counts;
* :mod:`diar.report.plot`: a timeline drawn with matplotlib (PNG, SVG, PDF; ``diar plot``;
  needs the ``plot`` extra);
* :mod:`diar.report.svg`: a compact inline SVG of a timeline, for the report page;
* :mod:`diar.report.inputs`: what a job's output folder holds, read for the report;
* :mod:`diar.report.page`: the self-contained HTML report of a job (``diar report``);
* :mod:`diar.report.browser`: headless Chromium, to check that a page renders.

Nothing here needs Ray; only :mod:`diar.report.plot` needs matplotlib.
"""
