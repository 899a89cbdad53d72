"""HTTPS fakes of the service's third parties (Anthropic, Resend, fal.ai, Stripe, social platforms).

Started by the local backend as one process; see ``app.py`` for the answers
and the capture API, ``__main__.py`` for how it runs.
"""
