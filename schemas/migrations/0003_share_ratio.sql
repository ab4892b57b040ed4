-- Dark-social vs public-social visits per site and bucket (minute, hour,
-- day), read from the per-minute aggregates. dark_public_ratio is NULL when a
-- bucket has no public-social visits.
CREATE VIEW IF NOT EXISTS {db}.share_ratio AS
SELECT
    site_id,
    bucket_size,
    multiIf(bucket_size = 'minute', minute, bucket_size = 'hour', toStartOfHour(minute), toStartOfDay(minute)) AS bucket,
    sumIf(visits, channel = 'dark_social') AS dark_social_visits,
    sumIf(visits, channel = 'social') AS public_social_visits,
    if(public_social_visits = 0, NULL, dark_social_visits / public_social_visits) AS dark_public_ratio
FROM {db}.traffic_per_minute
ARRAY JOIN ['minute', 'hour', 'day'] AS bucket_size
GROUP BY site_id, bucket_size, bucket;
