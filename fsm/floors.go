package fsm

import (
	"container/heap"
	"maps"
	"slices"
)

// floors is the token floor of each name that has one (DESIGN.md,
// "Protocol 4"): the next grant of the name gets a token above it. A
// min-heap on the floor beside the map finds the floors an entry's index
// has passed in O(1) when there are none; only the set of floors is
// state, never the heap's layout (a restored replica builds its own).
type floors struct {
	by   map[string]*floorItem
	heap floorHeap
}

type floorItem struct {
	name  string
	floor uint64
	at    int // position in the heap
}

func newFloors() *floors { return &floors{by: map[string]*floorItem{}} }

// get is the floor of name, 0 if it has none.
func (f *floors) get(name string) uint64 {
	if it := f.by[name]; it != nil {
		return it.floor
	}
	return 0
}

// raise sets the floor of name to floor if that is higher than its own.
func (f *floors) raise(name string, floor uint64) {
	if it := f.by[name]; it != nil {
		if floor > it.floor {
			it.floor = floor
			heap.Fix(&f.heap, it.at)
		}
		return
	}
	it := &floorItem{name: name, floor: floor}
	f.by[name] = it
	heap.Push(&f.heap, it)
}

// dropUpTo removes every floor at or below index: a grant at a later
// index gets a larger token anyway.
func (f *floors) dropUpTo(index uint64) {
	for len(f.heap) > 0 && f.heap[0].floor <= index {
		it := heap.Pop(&f.heap).(*floorItem)
		delete(f.by, it.name)
	}
}

func (f *floors) len() int { return len(f.by) }

// sorted lists the names with a floor in byte order.
func (f *floors) sorted() []string { return slices.Sorted(maps.Keys(f.by)) }

// floorHeap is a container/heap of floor items, lowest floor first.
type floorHeap []*floorItem

func (h floorHeap) Len() int           { return len(h) }
func (h floorHeap) Less(i, j int) bool { return h[i].floor < h[j].floor }
func (h floorHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].at, h[j].at = i, j
}

func (h *floorHeap) Push(x any) {
	it := x.(*floorItem)
	it.at = len(*h)
	*h = append(*h, it)
}

func (h *floorHeap) Pop() any {
	old := *h
	it := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return it
}
