// Package leader elects the one keywatch replica that runs the singleton loops (detectors,
// alerting, senders) through Kafka group membership; it does not know what those loops are.
package leader

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"

	"github.com/keywatch/keywatch/internal/backoff"
)

// Options configure an Elector.
type Options struct {
	// Disabled makes the Elector lead always, without Kafka (a single replica).
	Disabled bool
	Brokers  []string
	// Dialer opens every connection to the brokers, with their TLS and SASL (internal/broker
	// builds it); nil: plaintext without SASL.
	Dialer *kafka.Dialer
	// GroupID is the consumer group the replicas join on Topic (keywatch uses kafka.group_id + "-leader").
	GroupID string
	// Topic is the coordination topic; it has one partition, created if missing.
	Topic string
	// SessionTimeout bounds the takeover after a leader dies; heartbeats go every third of it.
	SessionTimeout time.Duration
	Logger         *slog.Logger
	// Registerer takes the keywatch_leader gauge; nil: not registered.
	Registerer prometheus.Registerer
}

// Elector takes part in the election: the member assigned partition 0 of Topic in a generation
// of the group is the leader for that generation.
type Elector struct {
	opts    Options
	log     *slog.Logger
	leading atomic.Bool
	// incumbent: this member led the last generation it was in; it asks to keep leading, so
	// that a replica joining (a rolling deploy) does not move the leadership.
	incumbent atomic.Bool
	gauge     prometheus.Gauge
}

// New returns an Elector; nothing happens until Run.
func New(opts Options) *Elector {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	e := &Elector{opts: opts, log: opts.Logger.With("component", "leader"), gauge: prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "keywatch_leader",
		Help: "1 while this replica is the leader that runs the detectors, alerting, Slack and revoke senders; else 0.",
	})}
	if opts.Registerer != nil {
		opts.Registerer.MustRegister(e.gauge)
	}
	return e
}

// IsLeader says whether this replica leads now.
func (e *Elector) IsLeader() bool { return e.leading.Load() }

func (e *Elector) setLeading(v bool) {
	e.leading.Store(v)
	if v {
		e.gauge.Set(1)
	} else {
		e.gauge.Set(0)
	}
}

// Run takes part in the election until ctx ends. Each time this replica becomes the leader it
// runs lead with a context that is cancelled when the leadership ends (rebalance, lost session,
// ctx), waits for it to return, and joins again. An error lead returns while it still leads ends
// Run with that error; Run returns nil when ctx ends.
func (e *Elector) Run(ctx context.Context, lead func(ctx context.Context) error) error {
	if e.opts.Disabled {
		e.log.Info("leading", "election", "disabled")
		e.setLeading(true)
		defer e.setLeading(false)
		err := lead(ctx)
		if ctx.Err() != nil {
			err = nil
		}
		e.log.Info("stopped leading")
		return err
	}
	if err := e.ensureTopic(ctx); err != nil {
		return err
	}
	session := e.opts.SessionTimeout
	cg, err := kafka.NewConsumerGroup(kafka.ConsumerGroupConfig{
		ID:                e.opts.GroupID,
		Brokers:           e.opts.Brokers,
		Topics:            []string{e.opts.Topic},
		Dialer:            e.opts.Dialer,
		GroupBalancers:    []kafka.GroupBalancer{stickyBalancer{e}},
		SessionTimeout:    session,
		HeartbeatInterval: session / 3,
		RebalanceTimeout:  session,
		JoinGroupBackoff:  time.Second,
		Timeout:           5 * time.Second,
	})
	if err != nil {
		return fmt.Errorf("leader: join group %s on topic %s: %w", e.opts.GroupID, e.opts.Topic, err)
	}
	var wg sync.WaitGroup
	defer func() {
		cg.Close() // leaves the group, so another replica takes over at once
		wg.Wait()
	}()
	runCtx, stopRun := context.WithCancel(ctx)
	defer stopRun()
	leadErr := make(chan error, 1)
	for {
		gen, err := cg.Next(runCtx)
		select {
		case err := <-leadErr:
			return err
		default:
		}
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, kafka.RebalanceInProgress) {
			e.log.Debug("leader election: group rebalancing; joining again", "group", e.opts.GroupID)
			continue
		}
		if err != nil {
			e.log.Warn("leader election: joining the group failed; retrying", "group", e.opts.GroupID, "topic", e.opts.Topic, "err", err)
			continue // the group backs off by itself
		}
		leads := assigned(gen, e.opts.Topic)
		e.incumbent.Store(leads)
		if !leads {
			e.log.Debug("following", "generation", gen.ID, "member", gen.MemberID)
			continue
		}
		wg.Add(1)
		gen.Start(func(genCtx context.Context) {
			defer wg.Done()
			lctx, cancel := context.WithCancel(runCtx)
			defer cancel()
			stop := context.AfterFunc(genCtx, cancel)
			defer stop()
			e.log.Info("leading", "generation", gen.ID, "member", gen.MemberID)
			e.setLeading(true)
			err := lead(lctx)
			e.setLeading(false)
			e.log.Info("stopped leading", "generation", gen.ID)
			if err != nil && lctx.Err() == nil {
				leadErr <- err
				stopRun()
			}
		})
	}
}

// assigned says whether gen gives this member partition 0 of topic.
func assigned(gen *kafka.Generation, topic string) bool {
	for _, p := range gen.Assignments[topic] {
		if p.ID == 0 {
			return true
		}
	}
	return false
}

// ensureTopic creates the one-partition coordination topic if it does not exist, retrying while
// Kafka cannot be reached.
func (e *Elector) ensureTopic(ctx context.Context) error {
	waits := backoff.Policy{Initial: time.Second, Max: 30 * time.Second}.Waits()
	for {
		err := e.createTopic(ctx)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return nil
		}
		wait := waits.Next()
		e.log.Warn("leader: cannot check or create the coordination topic; retrying", "topic", e.opts.Topic, "retry_in", wait, "err", err)
		if !backoff.Sleep(ctx, wait) {
			return nil
		}
	}
}

func (e *Elector) createTopic(ctx context.Context) error {
	dialer := e.opts.Dialer
	if dialer == nil {
		dialer = kafka.DefaultDialer
	}
	broker := e.opts.Brokers[rand.IntN(len(e.opts.Brokers))]
	conn, err := dialer.DialContext(ctx, "tcp", broker)
	if err != nil {
		return err
	}
	defer conn.Close()
	parts, err := conn.ReadPartitions(e.opts.Topic)
	if err == nil && len(parts) > 0 {
		return nil
	}
	if err != nil && !errors.Is(err, kafka.UnknownTopicOrPartition) {
		return err
	}
	brokers, err := conn.Brokers()
	if err != nil {
		return err
	}
	controller, err := conn.Controller()
	if err != nil {
		return err
	}
	cc, err := dialer.DialContext(ctx, "tcp", net.JoinHostPort(controller.Host, strconv.Itoa(controller.Port)))
	if err != nil {
		return err
	}
	defer cc.Close()
	err = cc.CreateTopics(kafka.TopicConfig{Topic: e.opts.Topic, NumPartitions: 1, ReplicationFactor: min(3, len(brokers))})
	if err != nil && !errors.Is(err, kafka.TopicAlreadyExists) {
		return fmt.Errorf("create topic %s: %w", e.opts.Topic, err)
	}
	e.log.Info("created the coordination topic", "topic", e.opts.Topic)
	return nil
}

// stickyBalancer gives partition 0 of the coordination topic to the member that led the previous
// generation when it is still in the group, else to the member with the lowest id.
type stickyBalancer struct{ e *Elector }

func (stickyBalancer) ProtocolName() string { return "keywatch-leader-sticky" }

func (b stickyBalancer) UserData() ([]byte, error) {
	if b.e.incumbent.Load() {
		return []byte{1}, nil
	}
	return []byte{0}, nil
}

func (stickyBalancer) AssignGroups(members []kafka.GroupMember, partitions []kafka.Partition) kafka.GroupMemberAssignments {
	out := kafka.GroupMemberAssignments{}
	if len(members) == 0 {
		return out
	}
	chosen := members[0]
	for _, m := range members[1:] {
		mine, theirs := len(m.UserData) > 0 && m.UserData[0] == 1, len(chosen.UserData) > 0 && chosen.UserData[0] == 1
		if mine && !theirs || mine == theirs && m.ID < chosen.ID {
			chosen = m
		}
	}
	for _, p := range partitions {
		if out[chosen.ID] == nil {
			out[chosen.ID] = map[string][]int{}
		}
		out[chosen.ID][p.Topic] = append(out[chosen.ID][p.Topic], p.ID)
	}
	return out
}
