//go:build !linux

package main

import (
	"io"
	"os"
)

func openDirect(string) *os.File { return nil }

func newDirectReader(*os.File, int64, int64) io.Reader { return nil }
