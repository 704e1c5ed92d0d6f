-- The conversation id Slack answered a post with: chat.update and conversations.history need the
-- id, while slack.default_channel and routes may name a channel ("#keywatch"). Empty for messages
-- posted before this migration (their channel's id is then looked up by name).
ALTER TABLE notifications ADD COLUMN IF NOT EXISTS channel_id String;
