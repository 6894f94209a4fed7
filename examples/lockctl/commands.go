package main

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
)

type statusBody struct {
	ID           string `json:"id"`
	State        string `json:"state"`
	Leader       string `json:"leader"`
	Term         uint64 `json:"term"`
	CommitIndex  uint64 `json:"commit_index"`
	AppliedIndex uint64 `json:"applied_index"`
	Protocol     int    `json:"protocol"`
	Sessions     int    `json:"sessions"`
	Locks        int    `json:"locks"`
	Members      []struct {
		ID     string `json:"id"`
		Addr   string `json:"addr"`
		Voter  bool   `json:"voter"`
		Leader bool   `json:"leader"`
	} `json:"members"`
}

type lockBody struct {
	Name        string `json:"name"`
	Held        bool   `json:"held"`
	Token       uint64 `json:"token"`
	Owner       string `json:"owner"`
	Kind        string `json:"kind"`
	Holder      string `json:"holder"`
	Node        string `json:"node"`
	SinceMS     int64  `json:"since_ms"`
	ExpiresInMS int64  `json:"expires_in_ms"`
	Waiters     int    `json:"waiters"`
	Queue       []struct {
		Holder   string `json:"holder"`
		Node     string `json:"node"`
		Owner    string `json:"owner"`
		WaitedMS int64  `json:"waited_ms"`
	} `json:"queue"`
}

func (c *cli) status(ctx context.Context, members bool) error {
	var st statusBody
	if ok, err := c.get(ctx, "/v1/status", &st); !ok || err != nil {
		return err
	}
	if members {
		var rows [][]string
		for _, m := range st.Members {
			role := "non-voter"
			if m.Voter {
				role = "voter"
			}
			if m.Leader || m.ID == st.Leader {
				role += ", leader"
			}
			rows = append(rows, []string{m.ID, m.Addr, role})
		}
		c.table("ID\tADDRESS\tROLE", rows)
		return nil
	}
	c.table("ID\tSTATE\tLEADER\tTERM\tCOMMIT\tAPPLIED\tPROTOCOL\tSESSIONS\tLOCKS", [][]string{{
		st.ID, st.State, st.Leader, strconv.FormatUint(st.Term, 10), strconv.FormatUint(st.CommitIndex, 10),
		strconv.FormatUint(st.AppliedIndex, 10), strconv.Itoa(st.Protocol), strconv.Itoa(st.Sessions), strconv.Itoa(st.Locks),
	}})
	return nil
}

// locks lists every page of held locks.
func (c *cli) locks(ctx context.Context, prefix string) error {
	var rows [][]string
	cursor := ""
	for {
		q := url.Values{"prefix": {prefix}}
		if cursor != "" {
			q.Set("cursor", cursor)
		}
		var page struct {
			Locks []lockBody `json:"locks"`
			Next  string     `json:"next"`
		}
		if c.json { // one JSON document per page
			body, _, err := c.do(ctx, http.MethodGet, "/v1/locks?"+q.Encode())
			if err != nil {
				return err
			}
			if _, err := c.out.Write(body); err != nil {
				return err
			}
			if err := jsonNext(body, &page); err != nil || page.Next == "" {
				return err
			}
			cursor = page.Next
			continue
		}
		if _, err := c.get(ctx, "/v1/locks?"+q.Encode(), &page); err != nil {
			return err
		}
		for _, l := range page.Locks {
			rows = append(rows, []string{l.Name, strconv.FormatUint(l.Token, 10), l.Kind, l.Holder, l.Owner, ms(l.SinceMS), strconv.Itoa(l.Waiters)})
		}
		if page.Next == "" {
			break
		}
		cursor = page.Next
	}
	c.table("NAME\tTOKEN\tKIND\tHOLDER\tOWNER\tHELD FOR\tWAITERS", rows)
	return nil
}

func (c *cli) inspect(ctx context.Context, name string) error {
	var l lockBody
	if ok, err := c.get(ctx, "/v1/locks/"+escape(name)+"?queue=1000", &l); !ok || err != nil {
		return err
	}
	if !l.Held {
		_, _ = fmt.Fprintf(c.out, "%s: free\n", l.Name)
		return nil
	}
	c.table("NAME\tTOKEN\tKIND\tHOLDER\tNODE\tOWNER\tHELD FOR\tEXPIRES IN\tWAITERS", [][]string{{
		l.Name, strconv.FormatUint(l.Token, 10), l.Kind, l.Holder, l.Node, l.Owner, ms(l.SinceMS), ms(l.ExpiresInMS), strconv.Itoa(l.Waiters),
	}})
	if len(l.Queue) > 0 {
		var rows [][]string
		for i, w := range l.Queue {
			rows = append(rows, []string{strconv.Itoa(i + 1), w.Holder, w.Node, w.Owner, ms(w.WaitedMS)})
		}
		_, _ = fmt.Fprintln(c.out)
		c.table("#\tWAITER\tNODE\tOWNER\tWAITED", rows)
	}
	return nil
}

func (c *cli) revoke(ctx context.Context, name, token string) error {
	body, code, err := c.do(ctx, http.MethodPost, "/v1/locks/"+escape(name)+"/revoke?token="+token)
	if err != nil {
		return err
	}
	if c.json {
		_, err := c.out.Write(body)
		return err
	}
	if code == http.StatusAccepted {
		_, _ = fmt.Fprintf(c.out, "%s token %s: revoking (the holder has its grace to let go)\n", name, token)
		return nil
	}
	_, _ = fmt.Fprintf(c.out, "%s token %s: revoked\n", name, token)
	return nil
}

func (c *cli) sessions(ctx context.Context) error {
	var all struct {
		Sessions []struct {
			ID    string `json:"id"`
			Owner string `json:"owner"`
			TTLMS int64  `json:"ttl_ms"`
			Node  string `json:"node"`
		} `json:"sessions"`
	}
	if ok, err := c.get(ctx, "/v1/sessions", &all); !ok || err != nil {
		return err
	}
	var rows [][]string
	for _, s := range all.Sessions {
		rows = append(rows, []string{s.ID, s.Owner, ms(s.TTLMS), s.Node})
	}
	c.table("ID\tOWNER\tTTL\tOPENED AT", rows)
	return nil
}

func (c *cli) transfer(ctx context.Context) error {
	body, _, err := c.do(ctx, http.MethodPost, "/v1/leader/transfer")
	if err != nil {
		return err
	}
	if c.json {
		_, err := c.out.Write(body)
		return err
	}
	_, _ = fmt.Fprintln(c.out, "leadership transferred")
	return nil
}

// snapshot saves a backup to file, written whole or not at all (a
// temporary file renamed once complete).
func (c *cli) snapshot(ctx context.Context, file string) error {
	body, _, err := c.do(ctx, http.MethodGet, "/v1/snapshot")
	if err != nil {
		return err
	}
	if err := writeWhole(file, body); err != nil {
		return err
	}
	if !c.json {
		_, _ = fmt.Fprintf(c.out, "saved %d bytes to %s\n", len(body), file)
	}
	return nil
}

// writeWhole writes data to file whole or not at all: to a temporary file
// in the same directory, synced, then renamed over file (and removed if
// anything failed).
func writeWhole(file string, data []byte) (err error) {
	f, err := os.CreateTemp(filepath.Dir(file), filepath.Base(file)+".*.tmp")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = os.Remove(f.Name())
		}
	}()
	if _, err = f.Write(data); err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	return os.Rename(f.Name(), file)
}
