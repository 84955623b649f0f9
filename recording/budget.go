package recording

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// ParseBudget reads a budget as --max-inflate gives it: "Nx", N times the file's size, or a
// size (see ParseSize). The error names the flag and says what to give.
func ParseBudget(s string) (Budget, error) {
	if n, ok := strings.CutSuffix(strings.ToLower(s), "x"); ok {
		r, err := strconv.ParseInt(n, 10, 64)
		if err != nil || r < 1 || r > 1<<20 {
			return Budget{}, fmt.Errorf("--max-inflate %q: want a multiple of the file's size from 1x to %dx, or a size such as 8G", s, 1<<20)
		}
		return Budget{Ratio: r}, nil
	}
	n, err := ParseSize(s)
	if err != nil {
		return Budget{}, fmt.Errorf("--max-inflate %q: %v, or a multiple of the file's size such as 64x", s, err)
	}
	return Budget{Max: n}, nil
}

// ParseSize reads a byte count with an optional K, M or G suffix (powers of 1024).
func ParseSize(s string) (int64, error) {
	bad := errors.New("want a positive number of bytes, optionally with K, M or G (e.g. 500M)")
	if s == "" {
		return 0, bad
	}
	mult := int64(1)
	switch strings.ToUpper(s[len(s)-1:]) {
	case "K":
		mult = 1 << 10
	case "M":
		mult = 1 << 20
	case "G":
		mult = 1 << 30
	}
	if mult > 1 {
		s = s[:len(s)-1]
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 || n > (1<<62)/mult {
		return 0, bad
	}
	return n * mult, nil
}
