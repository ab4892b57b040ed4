-- Every minted token (one per pageview of a person), kept by a materialized
-- view so that share_visits looks tokens up by primary key instead of
-- scanning events. parent_token is the token the minting pageview itself
-- arrived with: it links re-share cascades.
CREATE TABLE IF NOT EXISTS {db}.minted_tokens
(
    site_id LowCardinality(String),
    token String,
    minted_at DateTime64(3, 'UTC'),
    minting_event_id UUID,
    sharer_visitor_id String,
    url String,
    parent_token String
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(minted_at)
ORDER BY (site_id, token)
SETTINGS non_replicated_deduplication_window = 10000, ttl_only_drop_parts = 1;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.minted_tokens_mv TO {db}.minted_tokens AS
SELECT
    site_id,
    minted_token AS token,
    received_at AS minted_at,
    event_id AS minting_event_id,
    visitor_id AS sharer_visitor_id,
    url,
    if(token_status = 'invalid', '', landing_token) AS parent_token
FROM {db}.events
WHERE kind = 'pageview' AND minted_token != '' AND NOT is_bot;

-- Each tokened visit of a person joined to the pageview that minted its
-- token: who shared (sharer visitor), which page, how long ago, the parent
-- token, and the cascade depth (1 = shared by a reader who arrived without a
-- token, 2 = a re-share of such a share, ...), computed by a recursive walk
-- up the parent tokens, bounded at 32 hops against forged cycles.
-- Address-bar shares are resolved here: their sharer is only known from the
-- minting pageview. Minting columns are NULL when that pageview has not
-- arrived (yet).
CREATE VIEW IF NOT EXISTS {db}.share_visits AS
WITH RECURSIVE ancestry AS
(
    SELECT DISTINCT site_id, landing_token AS visit_token, landing_token AS token, toUInt32(1) AS depth
    FROM {db}.events
    WHERE kind = 'pageview' AND landing_token != '' AND token_status != 'invalid' AND NOT is_bot
    UNION ALL
    SELECT a.site_id, a.visit_token, t.parent_token AS token, a.depth + 1 AS depth
    FROM {db}.minted_tokens AS t
    INNER JOIN ancestry AS a ON t.site_id = a.site_id AND t.token = a.token
    WHERE t.parent_token != '' AND a.depth < 32
)
SELECT
    visit.site_id AS site_id,
    visit.event_id AS visit_event_id,
    visit.received_at AS visited_at,
    visit.url AS visit_url,
    visit.visitor_id AS visitor_id,
    visit.channel AS channel,
    visit.channel_source AS channel_source,
    visit.landing_token AS token,
    visit.token_status AS token_status,
    visit.landing_share_method AS share_method,
    visit.landing_share_target AS share_target,
    visit.share_age_seconds AS share_age_seconds,
    if(minting.token IS NULL, visit.landing_sharer_visitor_id, minting.sharer_visitor_id) AS sharer_visitor_id,
    minting.url AS shared_url,
    minting.minted_at AS shared_page_viewed_at,
    if(minting.token IS NULL, visit.landing_parent_token, minting.parent_token) AS parent_token,
    depths.cascade_depth AS cascade_depth
FROM {db}.events AS visit
LEFT JOIN
(
    -- Only the tokens visits arrived with, read by primary key: the hash
    -- table of the join stays as small as the set of shared tokens.
    SELECT *
    FROM {db}.minted_tokens
    WHERE (site_id, token) IN (SELECT site_id, landing_token FROM {db}.events WHERE landing_token != '')
) AS minting ON visit.site_id = minting.site_id AND visit.landing_token = minting.token
LEFT JOIN
(
    SELECT site_id, visit_token, max(depth) AS cascade_depth
    FROM ancestry
    GROUP BY site_id, visit_token
) AS depths ON visit.site_id = depths.site_id AND visit.landing_token = depths.visit_token
WHERE visit.kind = 'pageview' AND visit.landing_token != '' AND visit.token_status != 'invalid' AND NOT visit.is_bot
SETTINGS join_use_nulls = 1;
