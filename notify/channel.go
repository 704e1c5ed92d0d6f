package notify

import (
	"context"
	"fmt"
	"regexp"
	"strings"

	"github.com/slack-go/slack"
)

// conversationIDPattern matches Slack ids (C… public, G… private channels, D… direct messages,
// U…/W… users; upper case, where channel names are lower case). chat.postMessage takes a channel's
// name, but chat.update, conversations.history and conversations.replies need its id.
var conversationIDPattern = regexp.MustCompile(`^[CGDUW][A-Z0-9_]+$`)

// conversation returns the id of w's channel: the one Slack answered the post with, the configured
// channel when it is an id, else the id looked up by name.
func (s *Slack) conversation(ctx context.Context, w row) (string, error) {
	if w.ChannelID != "" {
		return w.ChannelID, nil
	}
	return s.conversationID(ctx, w.Channel)
}

// conversationID looks a channel name ("#keywatch" or "keywatch") up among the conversations the
// bot is a member of (users.conversations; scopes channels:read, groups:read), and caches it.
func (s *Slack) conversationID(ctx context.Context, channel string) (string, error) {
	if conversationIDPattern.MatchString(channel) {
		return channel, nil
	}
	name := strings.TrimPrefix(channel, "#")
	s.mu.Lock()
	id, ok := s.channelIDs[name]
	s.mu.Unlock()
	if ok {
		return id, nil
	}
	params := &slack.GetConversationsForUserParameters{Types: []string{"public_channel", "private_channel"}, Limit: 200, ExcludeArchived: true}
	for {
		chans, cursor, err := s.client.GetConversationsForUserContext(ctx, params)
		if err != nil {
			return "", fmt.Errorf("notify: look up the id of channel %s (users.conversations): %w", channel, err)
		}
		for _, c := range chans {
			if c.Name == name {
				s.mu.Lock()
				s.channelIDs[name] = c.ID
				s.mu.Unlock()
				return c.ID, nil
			}
		}
		if cursor == "" {
			// Not retried: the notification fails with channel_not_found until its content changes.
			return "", fmt.Errorf("notify: channel %s is not among the bot's conversations: invite the bot, or configure the channel's id: %w",
				channel, slack.SlackErrorResponse{Err: "channel_not_found"})
		}
		params.Cursor = cursor
	}
}
