"""The fake LLM provider (see app.py). Run it with `python manage.py fake_provider --port 9100`
or, without Django, `python -m devtools.fake_provider --port 9100`."""
