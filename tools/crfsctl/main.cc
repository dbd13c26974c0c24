// crfsctl - the crfs administration tool.
#include <cstdio>
#include <string_view>
#include <vector>

#include "tools/crfsctl/commands.h"

namespace {

constexpr char kUsage[] =
    "usage: crfsctl COMMAND [ARGS]\n"
    "\n"
    "commands:\n"
    "  decode [FILE|-]          print a capture of CRFS frames in snoop form\n"
    "  example mkdir [-o FILE]  write an example capture of a session that\n"
    "                           creates a directory (default: stdout)\n"
    "  hash NAME...             print btrfs name hashes (DIR_ITEM key offsets)\n"
    "  csum FILE                print the crc32c of each 4 KiB data block\n"
    "  tenant add --config FILE NAME   create a configured tenant's subvolume\n"
    "  tenant list --config FILE       list tenants and their storage\n"
    "  policy check FILE        validate a policy: errors and warnings with lines\n"
    "  policy diff [--config CRFSD.JSON | OLD] NEW [--sample FILE] [--audit DIR]\n"
    "                           rules and limits a new policy changes; with a\n"
    "                           sample of operations or the audit log, which it\n"
    "                           decides differently (a dry run)\n"
    "  policy explain FILE --tenant T OP PATH [PATH2] [--client URI] [--uid N] ...\n"
    "                           how a policy decides one operation, and why\n"
    "  policy apply FILE        put a policy in force in the running crfsd (admin socket)\n"
    "  policy show              the policy in force in the running crfsd\n"
    "  policy reload            make crfsd read its policy file again (as SIGHUP)\n"
    "  status                   what the running crfsd serves\n"
    "                           (these four: [--socket PATH | --config CRFSD.JSON] [--json])\n"
    "  help                     this text\n";

struct Command {
  std::string_view name;
  int (*run)(crfs::ctl::Args);
};

constexpr Command kCommands[] = {
    {"decode", crfs::ctl::DecodeCommand}, {"example", crfs::ctl::ExampleCommand}, {"hash", crfs::ctl::HashCommand},
    {"csum", crfs::ctl::CsumCommand},     {"tenant", crfs::ctl::TenantCommand},   {"policy", crfs::ctl::PolicyCommand},
    {"status", crfs::ctl::StatusCommand},
};

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string_view> args(argv + 1, argv + argc);
  if (args.empty() || args[0] == "help" || args[0] == "--help" || args[0] == "-h") {
    std::fputs(kUsage, args.empty() ? stderr : stdout);
    return args.empty() ? 2 : 0;
  }
  for (const Command& c : kCommands) {
    if (args[0] == c.name) return c.run(crfs::ctl::Args(args).subspan(1));
  }
  std::fprintf(stderr, "crfsctl: unknown command '%.*s'\n%s", static_cast<int>(args[0].size()), args[0].data(), kUsage);
  return 2;
}
