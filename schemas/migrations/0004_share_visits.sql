-- Each tokened visit joined to the pageview that minted its token: who
-- shared (sharer visitor), which page, how long ago, and the parent token
-- that links re-share cascades. Address-bar shares are resolved here too,
-- since their sharer is only known from the minting pageview.
CREATE VIEW IF NOT EXISTS {db}.share_visits AS
SELECT
    visit.site_id AS site_id,
    visit.event_id AS visit_event_id,
    visit.received_at AS visited_at,
    visit.url AS visit_url,
    visit.channel AS channel,
    visit.channel_source AS channel_source,
    visit.landing_token AS token,
    visit.token_status AS token_status,
    visit.landing_share_method AS share_method,
    visit.landing_share_target AS share_target,
    visit.share_age_seconds AS share_age_seconds,
    minting.visitor_id AS sharer_visitor_id,
    minting.url AS shared_url,
    minting.received_at AS shared_page_viewed_at,
    minting.landing_token AS parent_token
FROM {db}.events AS visit
LEFT JOIN
(
    SELECT minted_token, any(visitor_id) AS visitor_id, any(url) AS url, min(received_at) AS received_at, any(landing_token) AS landing_token
    FROM {db}.events
    WHERE kind = 'pageview' AND minted_token IS NOT NULL
    GROUP BY minted_token
) AS minting ON visit.landing_token = minting.minted_token
WHERE visit.kind = 'pageview' AND visit.landing_token IS NOT NULL AND visit.token_status != 'invalid' AND NOT visit.is_bot
SETTINGS join_use_nulls = 1;
