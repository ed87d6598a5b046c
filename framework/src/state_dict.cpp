// PyTorch's torch.save files of a state_dict, read and written without Python or LibTorch's
// unpickler. The reader: its own zip reader (stored entries, as torch.save writes them) and a
// pickle machine that knows only the globals a state_dict needs; it never imports, calls or
// runs anything the file names. The writer: what torch.save(model.state_dict(), f) writes, an
// OrderedDict of tensors, so torch.load(f, weights_only=True) reads it.
#include <zlib.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <memory>
#include <optional>
#include <unordered_map>

#include "torchfit/errors.hpp"
#include "torchfit/io.hpp"
#include "torchfit/weights.hpp"
#include "weights_detail.hpp"

namespace torchfit {
namespace detail {

static uint64_t le(const std::string& b, uint64_t at, int bytes) {
  if (at > b.size() || static_cast<uint64_t>(bytes) > b.size() - at) throw Refused("the zip directory runs past the end of the file");
  uint64_t v = 0;
  for (int i = bytes - 1; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(b[at + static_cast<uint64_t>(i)]);
  return v;
}

std::unordered_map<std::string, ZipEntry> read_zip(const std::string& b) {
  if (b.size() < 22) throw Refused("too short to be a zip archive");
  // The end-of-central-directory record, within the last 64 KiB (its comment) + 22 bytes.
  uint64_t eocd = std::string::npos;
  const uint64_t lowest = b.size() > 65557 ? b.size() - 65557 : 0;
  for (uint64_t at = b.size() - 22 + 1; at-- > lowest;) {
    if (le(b, at, 4) == 0x06054b50) {
      eocd = at;
      break;
    }
  }
  if (eocd == std::string::npos) throw Refused("no zip directory at its end (truncated?)");
  uint64_t entries = le(b, eocd + 10, 2), dir_size = le(b, eocd + 12, 4), dir_offset = le(b, eocd + 16, 4);
  if (entries == 0xFFFF || dir_size == 0xFFFFFFFF || dir_offset == 0xFFFFFFFF) {
    // Zip64: the locator just before points at the 64-bit record.
    if (eocd < 20 || le(b, eocd - 20, 4) != 0x07064b50) throw Refused("a zip64 archive without its locator");
    const uint64_t rec = le(b, eocd - 20 + 8, 8);
    if (le(b, rec, 4) != 0x06064b50) throw Refused("a zip64 archive whose directory record is missing");
    entries = le(b, rec + 32, 8);
    dir_size = le(b, rec + 40, 8);
    dir_offset = le(b, rec + 48, 8);
  }
  if (dir_offset > b.size() || dir_size > b.size() - dir_offset) throw Refused("the zip directory lies outside the file");
  if (entries > dir_size / 46 + 1) throw Refused("the zip directory claims more entries than it can hold");
  std::unordered_map<std::string, ZipEntry> out;
  uint64_t at = dir_offset;
  for (uint64_t n = 0; n < entries; ++n) {
    if (le(b, at, 4) != 0x02014b50) throw Refused("a damaged zip directory entry");
    const uint64_t method = le(b, at + 10, 2);
    const auto crc = static_cast<uint32_t>(le(b, at + 16, 4));
    uint64_t csize = le(b, at + 20, 4), usize = le(b, at + 24, 4);
    const uint64_t name_len = le(b, at + 28, 2), extra_len = le(b, at + 30, 2), comment_len = le(b, at + 32, 2);
    uint64_t local = le(b, at + 42, 4);
    if (at + 46 + name_len > b.size()) throw Refused("a zip entry name runs past the end of the file");
    std::string name = b.substr(at + 46, name_len);
    // Zip64 sizes and offset, in that order, for the fields that say 0xFFFFFFFF.
    for (uint64_t x = at + 46 + name_len; x + 4 <= at + 46 + name_len + extra_len;) {
      const uint64_t id = le(b, x, 2), len = le(b, x + 2, 2);
      if (id == 1) {
        uint64_t y = x + 4;
        if (usize == 0xFFFFFFFF) usize = le(b, y, 8), y += 8;
        if (csize == 0xFFFFFFFF) csize = le(b, y, 8), y += 8;
        if (local == 0xFFFFFFFF) local = le(b, y, 8), y += 8;
        if (y > x + 4 + len) throw Refused("a damaged zip64 field");
      }
      x += 4 + len;
    }
    at += 46 + name_len + extra_len + comment_len;
    if (method != 0 && method != 8) throw Refused("zip entry '" + name + "' uses compression method " + std::to_string(method));
    if (method == 0 && csize != usize) throw Refused("zip entry '" + name + "' is stored with two different sizes");
    if (le(b, local, 4) != 0x04034b50) throw Refused("zip entry '" + name + "' has no local header");
    const uint64_t data = local + 30 + le(b, local + 26, 2) + le(b, local + 28, 2);
    if (data > b.size() || csize > b.size() - data) throw Refused("zip entry '" + name + "' runs past the end of the file");
    out[name] = ZipEntry{data, csize, crc, method == 8, usize};
  }
  return out;
}

bool crc_matches(const std::string& bytes, const ZipEntry& e) {
  const auto* in = reinterpret_cast<const Bytef*>(bytes.data() + e.offset);
  if (!e.deflated) return crc32_z(0L, in, static_cast<z_size_t>(e.size)) == e.crc;
  // Inflated in pieces: its size is the directory's word, not trusted for an allocation.
  z_stream z{};
  if (inflateInit2(&z, -MAX_WBITS) != Z_OK) return false;
  z.next_in = const_cast<Bytef*>(in);
  z.avail_in = static_cast<uInt>(std::min<uint64_t>(e.size, std::numeric_limits<uInt>::max()));
  uLong crc = crc32_z(0L, nullptr, 0);
  uint64_t total = 0;
  std::vector<Bytef> chunk(1 << 16);
  int rc = Z_OK;
  while (rc == Z_OK) {
    z.next_out = chunk.data();
    z.avail_out = static_cast<uInt>(chunk.size());
    rc = inflate(&z, Z_NO_FLUSH);
    const auto produced = chunk.size() - z.avail_out;
    total += produced;
    crc = crc32_z(crc, chunk.data(), produced);
    if (total > e.unpacked) break;
    if (rc == Z_OK && produced == 0 && z.avail_in == 0) break;
  }
  inflateEnd(&z);
  return rc == Z_STREAM_END && total == e.unpacked && crc == e.crc;
}

}  // namespace detail

namespace {

using detail::Refused;
using detail::ZipEntry;

// ---------------------------------------------------------------------------------- writing

void put(std::string& out, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

// A zip of stored entries, each entry's data 64-byte aligned (as torch.save pads it).
std::string write_zip(const std::vector<std::pair<std::string, std::string>>& entries) {
  std::string out, directory;
  for (const auto& entry : entries) {
    const std::string& name = entry.first;  // (not structured bindings: the lambda below uses them)
    const std::string& data = entry.second;
    const auto crc = static_cast<uint32_t>(crc32_z(0L, reinterpret_cast<const Bytef*>(data.data()), data.size()));
    const uint64_t offset = out.size();
    const uint64_t unpadded = offset + 30 + name.size() + 4;
    const uint64_t pad = (64 - unpadded % 64) % 64;
    if (offset > 0xFFFFFFFFu || data.size() > 0xFFFFFFFFu) throw CheckpointError("a state_dict of 4 GiB or more");
    auto header = [&](std::string& h, bool central) {
      put(h, central ? 0x02014b50 : 0x04034b50, 4);
      if (central) put(h, 20, 2);  // version made by
      put(h, 20, 2);               // version needed
      put(h, 0, 2);                // flags
      put(h, 0, 2);                // stored
      put(h, 0, 4);                // time, date
      put(h, crc, 4);
      put(h, data.size(), 4);
      put(h, data.size(), 4);
      put(h, name.size(), 2);
      put(h, central ? 0 : 4 + pad, 2);
      if (central) {
        put(h, 0, 2);  // comment
        put(h, 0, 2);  // disk
        put(h, 0, 2);  // internal attributes
        put(h, 0, 4);  // external attributes
        put(h, offset, 4);
      }
      h += name;
    };
    header(out, false);
    put(out, 0x4246, 2);  // "FB": torch's padding field
    put(out, pad, 2);
    out.append(pad, 'Z');
    out += data;
    header(directory, true);
  }
  const uint64_t at = out.size();
  out += directory;
  put(out, 0x06054b50, 4);
  put(out, 0, 4);
  put(out, entries.size(), 2);
  put(out, entries.size(), 2);
  put(out, directory.size(), 4);
  put(out, at, 4);
  put(out, 0, 2);
  return out;
}

const char* storage_name(torch::ScalarType type) {
  switch (type) {
    case torch::kFloat: return "FloatStorage";
    case torch::kDouble: return "DoubleStorage";
    case torch::kHalf: return "HalfStorage";
    case torch::kBFloat16: return "BFloat16Storage";
    case torch::kLong: return "LongStorage";
    case torch::kInt: return "IntStorage";
    case torch::kShort: return "ShortStorage";
    case torch::kChar: return "CharStorage";
    case torch::kByte: return "ByteStorage";
    case torch::kBool: return "BoolStorage";
    default: return nullptr;
  }
}

struct Pickler {
  std::string out;
  void op(char c) { out.push_back(c); }
  void global(const std::string& module, const std::string& name) { out += "c" + module + "\n" + name + "\n"; }
  void text(const std::string& s) {
    op('X');
    put(out, s.size(), 4);
    out += s;
  }
  void integer(int64_t v) {
    if (v >= std::numeric_limits<int32_t>::min() && v <= std::numeric_limits<int32_t>::max()) {
      op('J');
      put(out, static_cast<uint32_t>(static_cast<int32_t>(v)), 4);
    } else {
      out.push_back(static_cast<char>(0x8a));  // LONG1, 8 bytes
      out.push_back(8);
      put(out, static_cast<uint64_t>(v), 8);
    }
  }
  void ints(torch::IntArrayRef values) {
    op('(');
    for (int64_t v : values) integer(v);
    op('t');
  }
  void empty_ordered_dict() {
    global("collections", "OrderedDict");
    op(')');
    op('R');
  }
};

}  // namespace

std::string detail::state_dict_bytes(const NamedTensors& tensors) {
  Pickler p;
  p.out += "\x80\x02";
  p.empty_ordered_dict();
  p.op('(');
  std::vector<std::pair<std::string, std::string>> entries;
  int64_t key = 0;
  for (const auto& [name, tensor] : tensors) {
    const char* storage = storage_name(tensor.scalar_type());
    if (!storage) {
      throw CheckpointError("tensor '" + name + "' has a type a state_dict file cannot hold (" +
                            std::string(c10::toString(tensor.scalar_type())) + ")");
    }
    const auto cpu = tensor.detach().to(torch::kCPU).contiguous();
    const std::string id = std::to_string(key++);
    p.text(name);
    p.global("torch._utils", "_rebuild_tensor_v2");
    p.op('(');
    p.op('(');
    p.text("storage");
    p.global("torch", storage);
    p.text(id);
    p.text("cpu");
    p.integer(cpu.numel());
    p.op('t');
    p.op('Q');
    p.integer(0);
    p.ints(cpu.sizes());
    p.ints(cpu.strides());
    p.out.push_back(static_cast<char>(0x89));  // requires_grad False
    p.empty_ordered_dict();                    // backward hooks
    p.op('t');
    p.op('R');
    entries.emplace_back("archive/data/" + id,
                         std::string(static_cast<const char*>(cpu.data_ptr()), cpu.numel() * cpu.element_size()));
  }
  p.op('u');
  p.op('.');
  entries.insert(entries.begin(), {"archive/data.pkl", p.out});
  entries.emplace_back("archive/version", "3\n");
  entries.emplace_back("archive/byteorder", "little");
  return write_zip(entries);
}

namespace {

// ---------------------------------------------------------------------------------- values

struct Value;
using Ref = std::shared_ptr<Value>;

struct Value {
  enum class Kind { None, Bool, Int, Float, Text, Tuple, List, Dict, Global, Storage, Tensor, Mark } kind;
  int64_t i = 0;
  double f = 0;
  std::string text;                      // Text; Global: "module name"; Storage: its record key
  std::vector<Ref> items;                // Tuple, List
  std::vector<std::pair<Ref, Ref>> dict;  // Dict, in order
  std::unordered_map<std::string, size_t> text_keys;  // Dict: where each string key is
  torch::Tensor tensor;                  // Tensor
  torch::ScalarType dtype = torch::kFloat;  // Storage
  int64_t numel = 0;                     // Storage
  explicit Value(Kind k) : kind(k) {}
};


const char* kind_name(Value::Kind k) {
  switch (k) {
    case Value::Kind::None: return "None";
    case Value::Kind::Bool: return "a bool";
    case Value::Kind::Int: return "an int";
    case Value::Kind::Float: return "a float";
    case Value::Kind::Text: return "a string";
    case Value::Kind::Tuple: return "a tuple";
    case Value::Kind::List: return "a list";
    case Value::Kind::Dict: return "a dict";
    case Value::Kind::Global: return "a global";
    case Value::Kind::Storage: return "a storage";
    case Value::Kind::Tensor: return "a tensor";
    case Value::Kind::Mark: return "a mark";
  }
  return "a value";
}

// The globals a state_dict needs, and nothing else.
std::optional<torch::ScalarType> storage_type(const std::string& global) {
  static const std::vector<std::pair<std::string, torch::ScalarType>> types = {
      {"torch FloatStorage", torch::kFloat},   {"torch DoubleStorage", torch::kDouble},
      {"torch HalfStorage", torch::kHalf},     {"torch BFloat16Storage", torch::kBFloat16},
      {"torch LongStorage", torch::kLong},     {"torch IntStorage", torch::kInt},
      {"torch ShortStorage", torch::kShort},   {"torch CharStorage", torch::kChar},
      {"torch ByteStorage", torch::kByte},     {"torch BoolStorage", torch::kBool}};
  for (const auto& [name, type] : types) {
    if (name == global) return type;
  }
  return std::nullopt;
}

bool allowed_global(const std::string& global) {
  return global == "collections OrderedDict" || global == "torch._utils _rebuild_tensor_v2" ||
         global == "torch._utils _rebuild_parameter" || storage_type(global).has_value();
}

// ---------------------------------------------------------------------------------- the machine

class Unpickler {
 public:
  Unpickler(const std::string& file, std::string pickle, std::string prefix,
            const std::unordered_map<std::string, ZipEntry>& records)
      : file_(file), p_(std::move(pickle)), prefix_(std::move(prefix)), records_(records) {}
  // Every value is unlinked from the others first: a pickle nested a million levels deep (or
  // holding itself) is then freed without a recursion of destructors.
  ~Unpickler() {
    for (auto& v : made_) {
      v->items.clear();
      v->dict.clear();
    }
  }
  Unpickler(const Unpickler&) = delete;
  Unpickler& operator=(const Unpickler&) = delete;

  Ref run() {
    while (true) {
      const auto op = static_cast<unsigned char>(byte());
      switch (op) {
        case 0x80: {  // PROTO
          const int v = static_cast<unsigned char>(byte());
          if (v < 2 || v > 5) throw Refused("pickle protocol " + std::to_string(v) + " is not one torch.save writes");
          break;
        }
        case 0x95: take(8); break;  // FRAME: a hint only
        case '.': {                 // STOP
          Ref top = pop();
          return top;
        }
        case 'c': {  // GLOBAL
          std::string module = line(), name = line();
          push_global(module + " " + name);
          break;
        }
        case 0x93: {  // STACK_GLOBAL
          Ref name = pop(), module = pop();
          if (name->kind != Value::Kind::Text || module->kind != Value::Kind::Text) throw Refused("a malformed global");
          push_global(module->text + " " + name->text);
          break;
        }
        case '(': push(make(Value::Kind::Mark)); break;
        case ')': push(make(Value::Kind::Tuple)); break;
        case ']': push(make(Value::Kind::List)); break;
        case '}': push(make(Value::Kind::Dict)); break;
        case 'N': push(make(Value::Kind::None)); break;
        case 0x88:
        case 0x89: {
          auto v = make(Value::Kind::Bool);
          v->i = op == 0x88;
          push(v);
          break;
        }
        case 'J': push_int(static_cast<int32_t>(number(4))); break;
        case 'K': push_int(static_cast<int64_t>(number(1))); break;
        case 'M': push_int(static_cast<int64_t>(number(2))); break;
        case 0x8a: {  // LONG1: little-endian two's complement
          const int n = static_cast<unsigned char>(byte());
          if (n > 8) throw Refused("an integer of " + std::to_string(n) + " bytes");
          uint64_t v = n ? number(n) : 0;
          if (n > 0 && n < 8 && (v >> (8 * n - 1)) & 1) v |= ~uint64_t{0} << (8 * n);
          push_int(static_cast<int64_t>(v));
          break;
        }
        case 'G': {  // BINFLOAT: big-endian double
          const std::string s = take(8);
          uint64_t bits = 0;
          for (char c : s) bits = (bits << 8) | static_cast<unsigned char>(c);
          auto v = make(Value::Kind::Float);
          std::memcpy(&v->f, &bits, sizeof bits);
          push(v);
          break;
        }
        case 'X': push_text(take(number(4))); break;
        case 0x8c: push_text(take(number(1))); break;
        case 0x8d: push_text(take(number(8))); break;
        case 'T': push_text(take(number(4))); break;
        case 'U': push_text(take(number(1))); break;
        case 'B': push_text(take(number(4))); break;
        case 'C': push_text(take(number(1))); break;
        case 0x8e: push_text(take(number(8))); break;
        case 'q': memo_put(number(1)); break;
        case 'r': memo_put(number(4)); break;
        case 0x94: memo_put(memo_.size()); break;
        case 'h': push(memo_get(number(1))); break;
        case 'j': push(memo_get(number(4))); break;
        case 't': {
          auto v = make(Value::Kind::Tuple);
          v->items = pop_to_mark();
          push(v);
          break;
        }
        case 0x85:
        case 0x86:
        case 0x87: {
          auto v = make(Value::Kind::Tuple);
          v->items.resize(op - 0x84);
          for (size_t k = v->items.size(); k-- > 0;) v->items[k] = pop();
          push(v);
          break;
        }
        case 'l': {
          auto v = make(Value::Kind::List);
          v->items = pop_to_mark();
          push(v);
          break;
        }
        case 'a': {
          Ref item = pop();
          expect(top(), Value::Kind::List, "APPEND")->items.push_back(item);
          break;
        }
        case 'e': {
          auto items = pop_to_mark();
          auto& list = expect(top(), Value::Kind::List, "APPENDS")->items;
          list.insert(list.end(), items.begin(), items.end());
          break;
        }
        case 'd': {
          auto items = pop_to_mark();
          auto v = make(Value::Kind::Dict);
          set_items(v, items);
          push(v);
          break;
        }
        case 's': {
          Ref value = pop(), key = pop();
          set_items(expect(top(), Value::Kind::Dict, "SETITEM"), {key, value});
          break;
        }
        case 'u': {
          auto items = pop_to_mark();
          set_items(expect(top(), Value::Kind::Dict, "SETITEMS"), items);
          break;
        }
        case 'Q': push(storage(pop())); break;
        case 'R': {
          Ref args = pop(), callable = pop();
          push(reduce(callable, expect(args, Value::Kind::Tuple, "REDUCE")));
          break;
        }
        case 'b': {  // BUILD: an OrderedDict's _metadata; nothing a state_dict's tensors need
          pop();
          const auto k = top()->kind;
          if (k != Value::Kind::Dict && k != Value::Kind::Tensor) {
            throw Refused("BUILD on " + std::string(kind_name(k)));
          }
          break;
        }
        default:
          throw Refused("pickle opcode 0x" + hex(op) + " at byte " + std::to_string(at_ - 1) +
                        ", which a state_dict never uses");
      }
    }
  }

 private:
  static std::string hex(unsigned v) {
    const char* digits = "0123456789abcdef";
    return {digits[(v >> 4) & 15], digits[v & 15]};
  }
  char byte() {
    if (at_ >= p_.size()) throw Refused("the pickle ends before its STOP (truncated?)");
    return p_[at_++];
  }
  std::string take(uint64_t n) {
    if (n > p_.size() - at_) throw Refused("the pickle ends inside a value (truncated?)");
    std::string s = p_.substr(at_, n);
    at_ += n;
    return s;
  }
  uint64_t number(int bytes) {
    const std::string s = take(static_cast<uint64_t>(bytes));
    uint64_t v = 0;
    for (int i = bytes - 1; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(s[static_cast<size_t>(i)]);
    return v;
  }
  std::string line() {
    const auto end = p_.find('\n', at_);
    if (end == std::string::npos || end - at_ > 256) throw Refused("a malformed global name");
    std::string s = p_.substr(at_, end - at_);
    at_ = end + 1;
    return s;
  }
  void push(Ref v) {
    if (stack_.size() > 1000000) throw Refused("a pickle stack deeper than any state_dict's");
    stack_.push_back(std::move(v));
  }
  Ref pop() {
    if (stack_.empty() || stack_.back()->kind == Value::Kind::Mark) throw Refused("a pickle that pops an empty stack");
    Ref v = std::move(stack_.back());
    stack_.pop_back();
    return v;
  }
  const Ref& top() const {
    if (stack_.empty()) throw Refused("a pickle that reads an empty stack");
    return stack_.back();
  }
  std::vector<Ref> pop_to_mark() {
    size_t m = stack_.size();
    while (m > 0 && stack_[m - 1]->kind != Value::Kind::Mark) --m;
    if (m == 0) throw Refused("a pickle without the mark it needs");
    std::vector<Ref> items(stack_.begin() + static_cast<std::ptrdiff_t>(m), stack_.end());
    stack_.resize(m - 1);
    return items;
  }
  static const Ref& expect(const Ref& v, Value::Kind k, const char* what) {
    if (v->kind != k) throw Refused(std::string(what) + " on " + kind_name(v->kind) + " where " + kind_name(k) + " belongs");
    return v;
  }
  void push_int(int64_t i) {
    auto v = make(Value::Kind::Int);
    v->i = i;
    push(v);
  }
  void push_text(std::string s) {
    auto v = make(Value::Kind::Text);
    v->text = std::move(s);
    push(v);
  }
  void push_global(const std::string& global) {
    if (!allowed_global(global)) {
      std::string shown = global;
      std::replace(shown.begin(), shown.end(), ' ', '.');
      if (shown.size() > 80) shown = shown.substr(0, 80) + "...";
      throw Refused("it asks for the Python global '" + shown +
                    "', which a state_dict never needs: refused, nothing was run (torchfit reads dicts of tensors "
                    "only, as Python's weights_only=True)");
    }
    auto v = make(Value::Kind::Global);
    v->text = global;
    push(v);
  }
  void memo_put(uint64_t index) {
    if (index > memo_.size()) throw Refused("a memo index past the next free one");
    if (index >= memo_.size()) memo_.resize(index + 1);
    memo_[index] = top();
  }
  Ref memo_get(uint64_t index) {
    if (index >= memo_.size() || !memo_[index]) throw Refused("a memo entry that was never stored");
    return memo_[index];
  }
  static void set_items(const Ref& dict, const std::vector<Ref>& items) {
    if (items.size() % 2) throw Refused("a dict with a key and no value");
    if (dict->dict.size() + items.size() / 2 > 10000000) throw Refused("a dict larger than any state_dict");
    for (size_t k = 0; k < items.size(); k += 2) {
      if (items[k]->kind == Value::Kind::Text) {
        const auto [it, fresh] = dict->text_keys.emplace(items[k]->text, dict->dict.size());
        if (!fresh) {
          dict->dict[it->second].second = items[k + 1];
          continue;
        }
      }
      dict->dict.emplace_back(items[k], items[k + 1]);
    }
  }

  // ('storage', torch.FloatStorage, key, location, numel): the record data/<key>.
  Ref storage(const Ref& pid) {
    expect(pid, Value::Kind::Tuple, "a persistent id");
    const auto& t = pid->items;
    if (t.size() != 5 || t[0]->kind != Value::Kind::Text || t[0]->text != "storage" ||
        t[1]->kind != Value::Kind::Global || t[2]->kind != Value::Kind::Text || t[4]->kind != Value::Kind::Int) {
      throw Refused("a persistent id that is not a tensor storage");
    }
    const auto type = storage_type(t[1]->text);
    if (!type) throw Refused("a storage of type '" + t[1]->text + "'");
    auto v = make(Value::Kind::Storage);
    v->dtype = *type;
    v->text = t[2]->text;
    v->numel = t[4]->i;
    if (v->numel < 0) throw Refused("a storage of negative size");
    return v;
  }

  torch::Tensor storage_tensor(const Value& s) {
    if (auto it = storages_.find(s.text); it != storages_.end()) return it->second;
    const auto record = records_.find(prefix_ + "data/" + s.text);
    if (record == records_.end()) throw Refused("the storage '" + s.text + "' has no data/" + s.text + " entry");
    const auto& e = record->second;
    if (e.deflated) throw Refused("the storage '" + s.text + "' is compressed; torch.save stores tensors uncompressed");
    const auto elem = static_cast<uint64_t>(c10::elementSize(s.dtype));
    if (static_cast<uint64_t>(s.numel) > e.size / elem) {
      throw Refused("the storage '" + s.text + "' holds " + std::to_string(e.size) + " bytes, fewer than its " +
                    std::to_string(s.numel) + " elements need");
    }
    if (!detail::crc_matches(file_, e)) {
      throw Refused("the data of storage '" + s.text + "' does not match its checksum (damaged?)");
    }
    auto t = torch::empty({s.numel}, torch::TensorOptions().dtype(s.dtype));
    if (s.numel) std::memcpy(t.data_ptr(), file_.data() + e.offset, static_cast<size_t>(s.numel) * elem);
    storages_.emplace(s.text, t);
    return t;
  }

  static std::vector<int64_t> ints(const Ref& v, const char* what) {
    expect(v, Value::Kind::Tuple, what);
    std::vector<int64_t> out;
    for (const auto& x : v->items) {
      if (x->kind != Value::Kind::Int) throw Refused(std::string(what) + " that holds " + kind_name(x->kind));
      out.push_back(x->i);
    }
    return out;
  }

  Ref reduce(const Ref& callable, const Ref& args) {
    expect(callable, Value::Kind::Global, "REDUCE");
    const auto& a = args->items;
    if (callable->text == "collections OrderedDict") {
      if (!a.empty()) throw Refused("an OrderedDict built from arguments");
      return make(Value::Kind::Dict);
    }
    if (callable->text == "torch._utils _rebuild_parameter") {
      if (a.empty() || a[0]->kind != Value::Kind::Tensor) throw Refused("a parameter without its tensor");
      return a[0];
    }
    if (callable->text == "torch._utils _rebuild_tensor_v2") {
      if (a.size() < 4 || a[0]->kind != Value::Kind::Storage || a[1]->kind != Value::Kind::Int) {
        throw Refused("a tensor whose arguments are not (storage, offset, size, stride, ...)");
      }
      const auto size = ints(a[2], "a tensor size"), stride = ints(a[3], "a tensor stride");
      const int64_t offset = a[1]->i;
      if (size.size() != stride.size() || size.size() > 64) throw Refused("a tensor whose size and stride differ in length");
      const torch::Tensor data = storage_tensor(*a[0]);
      // Every element inside the storage, and no more elements than it holds (a state_dict's
      // tensors are never broadcast views).
      int64_t count = 1, last = offset;
      if (offset < 0) throw Refused("a tensor at a negative offset");
      for (size_t d = 0; d < size.size(); ++d) {
        if (size[d] < 0 || stride[d] < 0) throw Refused("a tensor of negative size or stride");
        if (size[d] == 0) count = 0;
        if (count && size[d] > data.numel() / count) throw Refused("a tensor with more elements than its storage");
        count *= size[d];
      }
      if (count > 0) {
        for (size_t d = 0; d < size.size(); ++d) {
          if (stride[d] > 0 && size[d] - 1 > (data.numel() - 1 - last) / stride[d]) {
            throw Refused("a tensor that reaches past the end of its storage");
          }
          last += (size[d] - 1) * stride[d];
        }
        if (last >= data.numel()) throw Refused("a tensor that reaches past the end of its storage");
      }
      auto v = make(Value::Kind::Tensor);
      v->tensor = count == 0 ? torch::empty(size, data.options()) : data.as_strided(size, stride, offset).clone();
      return v;
    }
    // Storage types are allowed as the persistent id's type only, never called.
    throw Refused("a call of '" + callable->text + "'");
  }

  Ref make(Value::Kind k) {
    made_.push_back(std::make_shared<Value>(k));
    return made_.back();
  }

  const std::string& file_;
  const std::string p_;
  std::vector<Ref> made_;
  std::string prefix_;
  const std::unordered_map<std::string, ZipEntry>& records_;
  uint64_t at_ = 0;
  std::vector<Ref> stack_;
  std::vector<Ref> memo_;
  std::unordered_map<std::string, torch::Tensor> storages_;
};

// The dict of names to tensors inside what the pickle built.
NamedTensors tensors_of(const Ref& root, int depth = 0) {
  if (root->kind != Value::Kind::Dict) throw Refused(std::string("it holds ") + kind_name(root->kind) + ", not a dict");
  for (const char* nested : {"state_dict", "model_state_dict"}) {
    for (const auto& [key, value] : root->dict) {
      if (key->kind == Value::Kind::Text && key->text == nested && value->kind == Value::Kind::Dict) {
        if (depth >= 4) throw Refused("state_dicts nested in state_dicts more than 4 deep");
        return tensors_of(value, depth + 1);
      }
    }
  }
  NamedTensors out;
  for (const auto& [key, value] : root->dict) {
    if (key->kind == Value::Kind::Text && value->kind == Value::Kind::Tensor) out[key->text] = value->tensor;
  }
  if (out.empty()) throw Refused("its dict holds no tensors by name");
  return out;
}

}  // namespace

NamedTensors parse_state_dict(const std::string& bytes, const std::string& name) {
  const std::string what = "'" + name + "' is not a PyTorch state_dict torchfit can read: ";
  try {
    if (bytes.size() >= 2 && static_cast<unsigned char>(bytes[0]) == 0x80) {
      throw Refused("it is in PyTorch's legacy format (before 1.6); load and save it again with a newer torch.save");
    }
    const auto records = detail::read_zip(bytes);
    const ZipEntry* pickle = nullptr;
    std::string prefix;
    for (const auto& [entry, where] : records) {
      const auto slash = entry.find('/');
      if (slash != std::string::npos && entry.substr(slash + 1) == "data.pkl") {
        pickle = &where;
        prefix = entry.substr(0, slash + 1);
      }
    }
    if (pickle && pickle->deflated) throw Refused("its data.pkl is compressed; torch.save stores it uncompressed");
    if (!pickle) throw Refused("the zip archive has no data.pkl (is it a TorchScript module or a LibTorch archive?)");
    if (auto order = records.find(prefix + "byteorder"); order != records.end()) {
      if (bytes.substr(order->second.offset, order->second.size) != "little") {
        throw Refused("its tensors are stored big-endian");
      }
    }
    Unpickler machine(bytes, bytes.substr(pickle->offset, pickle->size), prefix, records);
    return tensors_of(machine.run());
  } catch (const Refused& e) {
    throw CheckpointError(what + e.what());
  } catch (const c10::Error& e) {
    throw CheckpointError(what + e.what_without_backtrace());
  }
}

}  // namespace torchfit
