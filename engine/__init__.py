"""seqrun: LinkedIn outreach sequences as code."""

__version__ = "0.1.0"
