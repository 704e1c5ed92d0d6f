package config

import (
	"fmt"
	"time"
)

// Leader elects the one replica that runs the detectors, alerting, the Slack sender and the
// revoke sender, through Kafka group membership on a one-partition coordination topic.
type Leader struct {
	Enabled        bool     `yaml:"enabled" help:"elect one replica to run detectors, alerting, Slack and revokes; false: this replica always runs them (single replica)"`
	Topic          string   `yaml:"topic" help:"one-partition coordination topic; the group is kafka.group_id + \"-leader\"; created if missing"`
	SessionTimeout Duration `yaml:"session_timeout" help:"a leader that stops heartbeating is replaced after about this long"`
}

func defaultLeader() Leader {
	return Leader{Enabled: true, Topic: "keywatch-leader", SessionTimeout: Duration(10 * time.Second)}
}

func (l Leader) validate() []error {
	var errs []error
	if l.Topic == "" {
		errs = append(errs, fmt.Errorf("leader.topic: must not be empty"))
	}
	if l.SessionTimeout < Duration(6*time.Second) || l.SessionTimeout > Duration(5*time.Minute) {
		errs = append(errs, fmt.Errorf("leader.session_timeout: %s: want 6s to 5m (the broker's group.min/max.session.timeout.ms)", l.SessionTimeout))
	}
	return errs
}
