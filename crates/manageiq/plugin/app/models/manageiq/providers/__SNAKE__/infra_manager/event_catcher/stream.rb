require "json"
require "open3"

# Tails `polyvisor manageiq events --follow` (NDJSON). Every line carries the cursor that
# resumes right after it; the last one is kept on the EMS so a restarted catcher (or a
# restarted child) neither loses nor repeats events.
class ManageIQ::Providers::__NAME__::InfraManager::EventCatcher::Stream
  class ProviderUnreachable < ManageIQ::Providers::BaseManager::EventCatcher::Runner::TemporaryFailure
  end

  attr_reader :cursor

  def initialize(ems, options = {})
    @ems        = ems
    @cursor     = options[:cursor] || ems.last_event_cursor
    @poll_sleep = options[:poll_sleep] || 20
    @collecting = false
  end

  def start
    @collecting = true
  end

  def stop
    @collecting = false
    Process.kill("TERM", @pid) if @pid
  rescue Errno::ESRCH
    nil
  end

  # Yields each event hash; restarts the child when it exits; raises ProviderUnreachable
  # when it reports the backend unreachable (exit 3).
  def poll
    while @collecting
      status = run_child { |line| handle_line(line) { |event| yield event } }
      raise ProviderUnreachable, "#{@ems.name}: backend unreachable" if status == 3

      sleep(@poll_sleep) if @collecting
    end
  end

  # One line of the stream; yields it when it is an event. Lines without an event only
  # move the cursor.
  def handle_line(line)
    data = JSON.parse(line)
    return if data.key?("error")

    @cursor = data["cursor"] if data["cursor"]
    @ems.update_last_event_cursor(@cursor) if @cursor
    yield data if data.key?("event_type")
  rescue JSON::ParserError
    nil
  end

  private

  def run_child
    conn = @ems.connect
    Open3.popen2(*conn.follow_command(@cursor)) do |stdin, stdout, wait|
      @pid = wait.pid
      stdin.write(conn.stdin_data)
      stdin.close
      stdout.each_line { |line| yield line }
      @pid = nil
      wait.value.exitstatus
    end
  end
end
