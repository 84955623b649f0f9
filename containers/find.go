package containers

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Selector picks containers across restarts: a container by its ID (a Docker container keeps its
// ID when it restarts), or a pod by NAMESPACE/POD (a pod recreated by its controller keeps its
// name, not its IDs).
type Selector struct {
	ID  string // full container ID
	Pod string // NAMESPACE/POD
	// What the user asked for and what it matched, for messages: "api", "shop/web-0".
	Query, Name string
}

// Matches reports whether c is selected.
func (s Selector) Matches(c Container) bool {
	if s.Pod != "" {
		return c.Pod.String() == s.Pod
	}
	return c.ID == s.ID
}

// Find resolves what a user typed after --container among the containers of all runtimes,
// running or not:
//   - a full container ID;
//   - a Docker or podman container's name (with or without the leading "/");
//   - NAMESPACE/POD;
//   - a pod's name, when only one namespace has a pod of that name;
//   - a unique prefix of a container's or a pod sandbox's ID.
//
// A container that belongs to a pod selects the pod: its network namespace is the pod's.
func Find(ctx context.Context, rts []Runtime, query string) (Selector, error) {
	if strings.TrimPrefix(strings.TrimSpace(query), "/") == "" {
		return Selector{}, errors.New("empty container name or ID")
	}
	var all []Container
	for _, rt := range rts {
		cs, err := rt.All(ctx)
		if err != nil {
			return Selector{}, err
		}
		all = append(all, cs...)
	}
	return Match(query, all)
}

// Match is Find over a given list of containers (a recording's, say).
func Match(query string, all []Container) (Selector, error) {
	q := strings.TrimPrefix(strings.TrimSpace(query), "/")
	if q == "" {
		return Selector{}, errors.New("empty container name or ID")
	}
	pick := func(c Container) Selector {
		if !c.Pod.IsZero() {
			return Selector{Pod: c.Pod.String(), Query: query, Name: c.Pod.String()}
		}
		return Selector{ID: c.ID, Query: query, Name: c.Name}
	}
	for _, c := range all {
		if c.ID == q {
			return pick(c), nil
		}
	}
	for _, c := range all {
		if c.Pod.IsZero() && c.Name == q {
			return pick(c), nil
		}
	}
	// A pod: NAMESPACE/POD, or a pod name found in one namespace only.
	pods := map[string]Container{}
	for _, c := range all {
		if c.Pod.IsZero() {
			continue
		}
		if k := c.Pod.String(); q == k || q == c.Pod.Name {
			if old, ok := pods[k]; !ok || c.Up && !old.Up {
				pods[k] = c
			}
		}
	}
	if len(pods) == 1 {
		for _, c := range pods {
			return Selector{Pod: c.Pod.String(), Query: query, Name: c.Pod.String()}, nil
		}
	}
	if len(pods) > 1 {
		keys := make([]string, 0, len(pods))
		for k := range pods {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		return Selector{}, fmt.Errorf("pod name %q is in %d namespaces: %s; give NAMESPACE/POD", q, len(keys), strings.Join(keys, ", "))
	}
	var matches []Container
	for _, c := range all {
		if strings.HasPrefix(c.ID, q) {
			matches = append(matches, c)
		}
	}
	// Several containers of one pod select that one pod.
	if len(matches) > 1 {
		first := matches[0].Pod.String()
		if first != "" && !slices.ContainsFunc(matches, func(c Container) bool { return c.Pod.String() != first }) {
			matches = matches[:1]
		}
	}
	switch len(matches) {
	case 1:
		return pick(matches[0]), nil
	case 0:
		return Selector{}, notFoundError(q, all)
	}
	desc := make([]string, len(matches))
	for i, c := range matches {
		desc[i] = c.ShortID() + " (" + displayOf(c) + ")"
	}
	slices.Sort(desc)
	return Selector{}, fmt.Errorf("ID prefix %q matches %d containers: %s; give more of the ID or the name", q, len(matches), strings.Join(desc, ", "))
}

// displayOf is how a container is named in messages: its pod, or its own name.
func displayOf(c Container) string {
	if !c.Pod.IsZero() {
		if c.Sandbox || c.Name == "" {
			return c.Pod.String()
		}
		return c.Pod.String() + " " + c.Name
	}
	if c.Name == "" {
		return c.ShortID()
	}
	return c.Name
}

// notFoundError suggests the running containers and pods whose names are closest to q.
func notFoundError(q string, all []Container) error {
	var running []string
	for _, c := range all {
		if !c.Up {
			continue
		}
		n := c.Name
		if !c.Pod.IsZero() {
			n = c.Pod.String()
		}
		if n != "" && !slices.Contains(running, n) {
			running = append(running, n)
		}
	}
	if len(running) == 0 {
		return fmt.Errorf("no container or pod named or with ID prefix %q; none is running", q)
	}
	return fmt.Errorf("no container or pod named or with ID prefix %q; closest running: %s", q, strings.Join(Closest(q, running, 3), ", "))
}

// Closest returns up to n of candidates, nearest to q by edit distance first; ties go to names
// that start with or contain q, then alphabetical order.
func Closest(q string, candidates []string, n int) []string {
	type scored struct {
		name string
		d    int
		rel  int // among equal distances: 0 has q as a prefix, 1 contains it, 2 neither
	}
	s := make([]scored, 0, len(candidates))
	for _, c := range candidates {
		rel := 2
		if strings.HasPrefix(c, q) {
			rel = 0
		} else if strings.Contains(c, q) {
			rel = 1
		}
		s = append(s, scored{c, editDistance(q, c), rel})
	}
	slices.SortFunc(s, func(a, b scored) int {
		return cmp.Or(a.d-b.d, a.rel-b.rel, strings.Compare(a.name, b.name))
	})
	out := make([]string, 0, n)
	for _, x := range s {
		if len(out) == n {
			break
		}
		if len(out) > 0 && out[len(out)-1] == x.name {
			continue
		}
		out = append(out, x.name)
	}
	return out
}
