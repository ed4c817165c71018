"""Dates as security staff read them: full to the second with the zone, in every admin list and page
(Django's English format shows minutes only and no zone, which hides ordering and makes times ambiguous)."""

DATETIME_FORMAT = "Y-m-d H:i:s T"
SHORT_DATETIME_FORMAT = "Y-m-d H:i:s T"
DATE_FORMAT = "Y-m-d"
SHORT_DATE_FORMAT = "Y-m-d"
TIME_FORMAT = "H:i:s T"
