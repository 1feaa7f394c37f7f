require "json"

# The connection `raw_connect` returns: each call runs `polyvisor manageiq ...` with
# AwesomeSpawn, the connection JSON (credentials included) on stdin, never in argv.
class ManageIQ::Providers::__NAME__::Cli
  DEFAULT_PATH = "polyvisor".freeze

  attr_reader :connection

  def initialize(connection, cli_path = nil)
    @connection = connection
    @cli_path   = cli_path || DEFAULT_PATH
  end

  def verify
    run("verify")
  end

  def inventory(vm_refs = [])
    run("inventory", *vm_refs.flat_map { |ref| ["--vm", ref.to_s] })
  end

  def operation(action, vm_ems_ref = nil, **options)
    params = ["op", action.to_s]
    params += ["--vm", vm_ems_ref.to_s] if vm_ems_ref
    options.each do |key, value|
      next if value.nil? || value == false

      params << "--#{key.to_s.tr("_", "-")}"
      params << value.to_s unless value == true
    end
    run(*params)
  end

  def events(since = nil)
    params = ["events"]
    params += ["--since", since] if since
    lines(*params)
  end

  def metrics(vm_ems_ref, start_time, end_time, interval = "realtime")
    run("metrics", "--vm", vm_ems_ref.to_s, "--start", start_time.utc.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "--end", end_time.utc.strftime("%Y-%m-%dT%H:%M:%SZ"), "--interval", interval)
  end

  def follow_command(since = nil)
    cmd = [@cli_path, "manageiq", "events", "--follow"]
    cmd += ["--since", since] if since
    cmd
  end

  def stdin_data
    JSON.generate(connection)
  end

  private

  def run(*params)
    JSON.parse(spawn(params))
  end

  def lines(*params)
    spawn(params).each_line.map(&:strip).reject(&:empty?).map { |line| JSON.parse(line) }
  end

  def spawn(params)
    AwesomeSpawn.run!(@cli_path, :params => ["manageiq", *params], :in_data => stdin_data).output
  rescue AwesomeSpawn::CommandResultError => err
    raise translate(err)
  end

  # Exit codes: 2 authentication, 3 unreachable, 1 anything else; the error document is
  # on stdout.
  def translate(err)
    result  = err.result
    message = begin
      JSON.parse(result.output.to_s.lines.last.to_s).dig("error", "message")
    rescue JSON::ParserError
      nil
    end
    message ||= result.error.to_s
    case result.exit_status
    when 2 then MiqException::MiqInvalidCredentialsError.new(message)
    when 3 then MiqException::MiqUnreachableError.new(message)
    else MiqException::Error.new(message)
    end
  end
end
